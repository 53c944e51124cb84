"""The blocking API's surface is the async API's: names, signatures, docstrings, and the types
mypy sees in a user's code."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

import chutes_jobs
from chutes_jobs import sync

#: Public members of the async classes the blocking twins do not have, and why.
NOT_MIRRORED = {
    (chutes_jobs.ChutesSession, "http"): "the aiohttp session lives on the loop: use .aio",
    (chutes_jobs.ChutesSession, "send_once"): "an async context manager over a raw response",
    **{
        (chutes_jobs.ChutesSession, setting): "a setting of the async session: see .aio"
        for setting in (
            "user_id",
            "retry_policy",
            "user_agent",
            "allow_insecure_http",
            "connection_limit",
            "timeout",
            "transfer_timeout",
        )
    },
}
#: Not mirrored on the blocking Ledger: a bulk run's own step (it hands out an awaitable the run
#: shields; ``mark_creating`` is its blocking form).
NOT_MIRRORED[(chutes_jobs.Ledger, "begin_create")] = "an awaitable a bulk run shields"
#: Members only the blocking twins have.
ONLY_BLOCKING = {"aio"}
#: Async methods whose blocking twin returns a plain iterator: the return annotation it shows.
ITERATORS = {"watch": "Iterator[Job]", "submit_many": "Iterator[BulkResult]"}
#: Written by hand (their docstring starts with the async one's): why.
HAND_WRITTEN = {
    "close": "also stops the loop thread",
    "from_env": "a classmethod building the blocking class",
    "open": "a classmethod building the blocking class",
    "run_and_report": "also takes a plain function (run in a thread): fn's annotation differs",
}
TWINS = [
    (sync.ChutesSession, chutes_jobs.ChutesSession),
    (sync.JobHandle, chutes_jobs.JobHandle),
    (sync.Ledger, chutes_jobs.Ledger),
]


def public(cls: type[Any]) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def public_of_instance(cls: type[Any]) -> set[str]:
    """What a user can reach on an instance (attributes set by ``__init__`` included)."""
    if cls is chutes_jobs.Ledger:  # the interface (its backends' extra members are a run's)
        return public(cls)
    session = chutes_jobs.ChutesSession(base_url="http://127.0.0.1:9")
    instance = session if cls is chutes_jobs.ChutesSession else chutes_jobs.JobHandle(session, "j")
    return {name for name in dir(instance) if not name.startswith("_")}


def test_the_module_has_the_same_names() -> None:
    assert set(sync.__all__) - {"SyncJobFunction"} == set(chutes_jobs.__all__)
    for name in chutes_jobs.__all__:
        if name not in {"ChutesSession", "JobHandle", "BulkResult", "Ledger", "run_and_report"}:
            assert getattr(sync, name) is getattr(chutes_jobs, name), name


@pytest.mark.parametrize(("blocking", "original"), TWINS, ids=lambda c: c.__qualname__)
def test_every_public_member_is_mirrored(blocking: type[Any], original: type[Any]) -> None:
    expected = {n for n in public_of_instance(original) if (original, n) not in NOT_MIRRORED}
    assert public(blocking) - ONLY_BLOCKING == expected


def mirrored_methods() -> list[tuple[type[Any], type[Any], str]]:
    return [
        (blocking, original, name)
        for blocking, original in TWINS
        for name in sorted(public(original))
        if (original, name) not in NOT_MIRRORED
        and inspect.isfunction(inspect.getattr_static(original, name))
    ]


@pytest.mark.parametrize(
    ("blocking", "original", "name"),
    mirrored_methods(),
    ids=lambda v: v if isinstance(v, str) else v.__qualname__,
)
def test_signatures_and_docstrings_match(
    blocking: type[Any], original: type[Any], name: str
) -> None:
    ours, theirs = getattr(blocking, name), getattr(original, name)
    mine, async_one = inspect.signature(ours), inspect.signature(theirs)
    if name == "run_and_report":
        async_one = _reannotated(async_one, "fn", "SyncJobFunction")
    assert list(mine.parameters.values()) == list(async_one.parameters.values())
    assert mine.return_annotation == ITERATORS.get(name, async_one.return_annotation)
    if name in HAND_WRITTEN or name in ITERATORS:  # the async docstring, then a note
        assert ours.__doc__.startswith(theirs.__doc__.rstrip())
    else:
        assert ours.__doc__ == theirs.__doc__


def _reannotated(signature: inspect.Signature, name: str, annotation: str) -> inspect.Signature:
    """``signature`` with parameter ``name`` annotated ``annotation``."""
    params = signature.parameters.values()
    return signature.replace(
        parameters=[p.replace(annotation=annotation) if p.name == name else p for p in params]
    )


def test_constructors_and_from_env_match() -> None:
    assert inspect.signature(sync.ChutesSession) == inspect.signature(chutes_jobs.ChutesSession)
    # A blocking handle is made on a blocking session, whatever the async one is typed to take.
    ours, theirs = inspect.signature(sync.JobHandle), inspect.signature(chutes_jobs.JobHandle)
    assert ours == _reannotated(theirs, "session", "ChutesSession")
    assert inspect.signature(sync.ChutesSession.from_env) == inspect.signature(
        chutes_jobs.ChutesSession.from_env
    )
    assert sync.ChutesSession.from_env.__doc__ == chutes_jobs.ChutesSession.from_env.__doc__


def test_ledger_open_matches() -> None:
    ours, theirs = sync.Ledger.open, chutes_jobs.Ledger.open
    assert inspect.signature(ours).parameters == inspect.signature(theirs).parameters
    assert ours.__doc__.startswith(theirs.__doc__.rstrip())


def test_module_level_run_and_report_matches() -> None:
    ours = inspect.signature(sync.run_and_report)
    theirs = _reannotated(inspect.signature(chutes_jobs.run_and_report), "fn", "SyncJobFunction")
    assert ours == theirs
    assert sync.run_and_report.__doc__ == chutes_jobs.run_and_report.__doc__


def test_properties_match() -> None:
    for blocking, original in TWINS:
        for name in public(original):
            static = inspect.getattr_static(original, name, None)
            if isinstance(static, property) and (original, name) not in NOT_MIRRORED:
                assert inspect.getattr_static(blocking, name).__doc__ == static.__doc__, name


USER_CODE = """
from pathlib import Path
from chutes_jobs.sync import BulkResult, ChutesSession, Job, JobHandle

with ChutesSession(base_url="http://127.0.0.1:8000", api_key="cpk_x") as s:
    handle = s.create_job("demo", "files", {"sizes": [1]}, disk_gb=20)
    reveal_type(handle)
    reveal_type(handle.wait(timeout=5.0))
    reveal_type(handle.watch())
    reveal_type(handle.download_outputs("out/", progress=True))
    reveal_type(s.job("x"))
    for result in s.submit_many("demo", "echo", [{"a": 1}], wait=True):
        reveal_type(result)
        reveal_type(result.handle)
    reveal_type(ChutesSession.from_env())
    handle.wait(timeout="soon")
    s.create_job("demo")
    ChutesSession(api_key=3)
"""

EXPECTED = [
    'Revealed type is "chutes_jobs.sync._session.JobHandle"',
    'Revealed type is "chutes_jobs.models.Job"',
    'Revealed type is "typing.Iterator[chutes_jobs.models.Job]"',
    'Revealed type is "dict[str, pathlib.Path]"',
    'Revealed type is "chutes_jobs.sync._session.JobHandle"',
    'Revealed type is "chutes_jobs.sync._session.BulkResult"',
    'Revealed type is "chutes_jobs.sync._session.JobHandle | None"',
    'Revealed type is "chutes_jobs.sync._session.ChutesSession"',
    'Argument "timeout" has incompatible type "str"; expected "float | None"',
    "Too few arguments",
    'Argument "api_key" to "ChutesSession" has incompatible type "int"; expected "str | None"',
]


def test_mypy_sees_the_blocking_types_in_user_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mypy import api  # the test extra has mypy

    snippet = tmp_path / "user.py"
    snippet.write_text(textwrap.dedent(USER_CODE))
    root = Path(chutes_jobs.__file__).parent.parent
    monkeypatch.setenv("MYPYPATH", str(root))  # this checkout's chutes_jobs, wherever pytest runs
    stdout, stderr, _ = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(root / ".mypy_cache"), str(snippet)]
    )
    lines = [line.split(": ", 2)[-1].split("  [")[0] for line in stdout.splitlines()]
    assert lines == EXPECTED, stdout + stderr
