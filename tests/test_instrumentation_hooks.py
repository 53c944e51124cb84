"""Instrumentation hooks: who is called, in what order, and what a failing hook cannot break.

End to end on the emulator over loopback HTTP. The log lines of the default LoggingHook are
pinned word for word (the same test passes on the tree before hooks existed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio

from chutes_jobs import ChutesSession, ConfigurationError, NotFoundError, RetryPolicy
from chutes_jobs import instrumentation as ins
from chutes_jobs.emulator import Emulator
from chutes_jobs.polling import PollPolicy

FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)
MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(autouse=True)
def process_hooks() -> Iterator[None]:
    """Every test starts from the defaults and leaves them as they were."""
    before = ins.get_hooks()
    ins.reset_hooks()
    yield
    ins.clear_hooks()
    for hook in before:
        ins.add_hook(hook)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})  # no local worker: nothing else is logged
        yield emulator


def session_for(emu: Emulator, hooks: list[Any] | None = None) -> ChutesSession:
    extra = {} if hooks is None else {"hooks": hooks}
    return ChutesSession(
        base_url=emu.base_url, api_key=emu.api_key, retry_policy=FAST_RETRY, **extra
    )


async def create_wait_download(session: ChutesSession, dest: Path, sizes: list[int]) -> None:
    job = await session.create_job("demo", "files", {"sizes": sizes})
    await job.wait(timeout=30, poll=FAST_POLL)
    await job.download_outputs(dest)


def record_builds(monkeypatch: pytest.MonkeyPatch, names: list[str], built: list[str]) -> None:
    """Append the class name to ``built`` whenever one of these events is constructed."""
    for name in names:
        cls = getattr(ins, name)
        init = cls.__init__

        def counting(self: Any, *args: Any, _init: Any = init, _name: str = name) -> None:
            built.append(_name)
            _init(self, *args)

        monkeypatch.setattr(cls, "__init__", counting)


ALL_EVENTS = [
    "RequestSent",
    "RequestAnswered",
    "RetryScheduled",
    "JobStateChanged",
    "TransferProgressed",
    "TransferEnded",
    "OperationStarted",
    "OperationEnded",
    "BulkCounters",
]


class Recorder:
    """A hook keeping every event it gets, tagged with its name."""

    def __init__(self, name: str, log: list[tuple[str, Any]]) -> None:
        self.name, self.log = name, log

    def __call__(self, event: Any) -> None:
        self.log.append((self.name, event))


# ----------------------------------------------------------------------------- who, in what order


async def test_process_hooks_come_first_in_the_order_added_then_the_sessions_own(
    emu: Emulator, tmp_path: Path
) -> None:
    calls: list[tuple[str, Any]] = []
    ins.add_hook(Recorder("global-1", calls))
    ins.add_hook(Recorder("global-2", calls))
    async with session_for(emu, [Recorder("own-1", calls), Recorder("own-2", calls)]) as s:
        await create_wait_download(s, tmp_path, [1000, 2000])
    order: dict[int, list[str]] = {}
    for name, event in calls:
        order.setdefault(id(event), []).append(name)
    mine = [names for names in order.values() if "own-1" in names]
    assert len(mine) > 10
    assert all(names == ["global-1", "global-2", "own-1", "own-2"] for names in mine)
    # the emulator's own worker session has no own hooks: its events reach the global ones
    assert all(names == ["global-1", "global-2"] for names in order.values() if names not in mine)


async def test_a_session_hook_sees_only_its_sessions_calls(emu: Emulator) -> None:
    mine: list[tuple[str, Any]] = []
    async with session_for(emu, [Recorder("mine", mine)]) as s, session_for(emu) as other:
        await other.create_job("demo", "echo", {"n": 1})
        assert mine == []
        await s.create_job("demo", "echo", {"n": 2})
    sent = [e for _, e in mine if isinstance(e, ins.RequestSent)]
    assert [(e.method, e.route) for e in sent] == [("POST", "/jobs/{chute_id}/{method}")]


async def test_event_types_limit_what_a_hook_gets_and_nothing_else_is_built(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    record_builds(monkeypatch, ALL_EVENTS, built)
    got: list[Any] = []

    def on_retry(event: Any) -> None:
        got.append(event)

    on_retry.event_types = {ins.RetryScheduled}  # type: ignore[attr-defined]
    ins.clear_hooks()
    emu.faults.add("get", status=503, times=1)
    async with session_for(emu, [on_retry]) as s:
        job = await s.create_job("demo", "echo", {})
        await job.wait(timeout=30, poll=FAST_POLL)
    assert built == ["RetryScheduled"]  # no hook takes the others: not one was made
    assert [(e.call_kind, e.status) for e in got] == [("read", 503)]


async def test_with_no_hook_at_all_no_event_is_built(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    record_builds(monkeypatch, ALL_EVENTS, built)
    ins.clear_hooks()
    emu.faults.add("create", status=429, retry_after=0.01, times=1)
    emu.faults.add("download", cut_after=10_000)
    async with session_for(emu) as s:
        await create_wait_download(s, tmp_path, [50_000])
        results = s.submit_many("demo", "echo", [{"i": i} for i in range(5)], wait=True)
        assert [r.ok async for r in results] == [True] * 5
    assert built == []


# ----------------------------------------------------------------------------- failing hooks


async def test_a_raising_hook_is_logged_once_and_never_breaks_a_call(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("hook bug")

    after: list[tuple[str, Any]] = []
    caplog.set_level(logging.ERROR, logger="chutes_jobs")
    async with session_for(emu, [broken, Recorder("after", after)]) as s:
        await create_wait_download(s, tmp_path, [3000, 4000])
        await create_wait_download(s, tmp_path / "again", [10])
    failures = [r for r in caplog.records if "instrumentation hook" in r.getMessage()]
    assert len(failures) == 1
    assert "broken" in failures[0].getMessage() and failures[0].exc_info is not None
    assert len(after) > 10  # the next hook got every event all the same
    landed = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.rglob("*.bin")))
    assert landed == ["file_000.bin", "file_000.bin", "file_001.bin"]


async def test_a_hooks_context_manager_wraps_each_attempt_and_cannot_swallow_its_error(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    trail: list[str] = []

    class Swallower:
        def __enter__(self) -> None:
            trail.append("enter")

        def __exit__(self, *exc: Any) -> bool:
            trail.append(f"exit {exc[0]}")
            return True  # would swallow the call's error, were it given one

    def hook(event: Any) -> Any:
        if isinstance(event, ins.RequestSent):
            trail.append(f"sent {event.attempt}")
            return Swallower()
        if isinstance(event, ins.RequestAnswered):
            trail.append(f"answered {event.status}")
        return None

    emu.faults.add("get", status=502, times=1)
    async with session_for(emu, [hook]) as s:
        with pytest.raises(NotFoundError):
            await s.job(MISSING).refresh()
    assert trail == [
        "sent 1",
        "enter",
        "answered 502",
        "exit None",
        "sent 2",
        "enter",
        "answered 404",
        "exit None",
    ]


async def test_a_context_manager_that_fails_is_logged_once(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    @contextlib.contextmanager
    def failing_exit() -> Iterator[None]:
        yield
        raise RuntimeError("exit bug")

    def hook(event: Any) -> Any:
        return failing_exit() if isinstance(event, ins.OperationStarted) else None

    caplog.set_level(logging.ERROR, logger="chutes_jobs")
    async with session_for(emu, [hook]) as s:
        for _ in range(3):
            job = await s.create_job("demo", "echo", {})
            assert (await job.wait(timeout=30, poll=FAST_POLL)).is_finished
    assert len([r for r in caplog.records if "instrumentation hook" in r.getMessage()]) == 1


# ----------------------------------------------------------------------------- the registry


def test_add_remove_clear_reset_and_get() -> None:
    def a(event: Any) -> None: ...
    def b(event: Any) -> None: ...

    assert [type(h) for h in ins.get_hooks()] == [ins.LoggingHook]
    ins.add_hook(a)
    ins.add_hook(b)
    ins.add_hook(a)
    assert ins.get_hooks()[1:] == (a, b, a)
    ins.remove_hook(a)  # every registration
    assert ins.get_hooks()[1:] == (b,)
    ins.remove_hook(a)  # not there: nothing happens
    ins.clear_hooks()
    assert ins.get_hooks() == ()
    ins.reset_hooks()
    assert [type(h) for h in ins.get_hooks()] == [ins.LoggingHook]


def test_a_bound_method_is_removed_by_equality() -> None:
    log: list[tuple[str, Any]] = []
    recorder = Recorder("r", log)
    ins.add_hook(recorder.__call__)
    ins.remove_hook(recorder.__call__)  # a new bound-method object, equal to the first
    assert [type(h) for h in ins.get_hooks()] == [ins.LoggingHook]


@pytest.mark.parametrize("bad", [42, "print", None])
def test_something_not_callable_is_refused_with_a_clear_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="callable"):
        ins.add_hook(bad)


@pytest.mark.parametrize("hooks", [[42], "abc", 7])
def test_a_session_refuses_hooks_that_are_not_a_list_of_callables(hooks: Any) -> None:
    with pytest.raises(ConfigurationError, match="hook"):
        ChutesSession(hooks=hooks)


# ----------------------------------------------------------------------------- the logging hook


async def test_the_log_lines_are_those_of_before_hooks(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Word for word what the library logged before its logging became a hook (this test,
    run on that tree, passes as well)."""
    emu.faults.add("create", status=429, retry_after=0.01, times=1)
    emu.faults.add("download", cut_after=10_000)
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with session_for(emu) as s:
        job = await s.create_job("demo", "files", {"sizes": [50_000]})
        await job.wait(timeout=30, poll=FAST_POLL)
        await emu.wait_idle()  # the emulator's worker logs no more
        caplog.clear()
        await job.download(job.job.file("file_000.bin"), tmp_path / "f.bin")  # type: ignore[union-attr]
        download_lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    base, path = emu.base_url, f"/jobs/{job.id}/download/"
    assert [level for level, _ in download_lines] == ["DEBUG", "WARNING", "DEBUG", "INFO"]
    assert re.fullmatch(rf"GET {base}{path}\S+ -> HTTP 200", download_lines[0][1])
    assert re.fullmatch(
        r"retrying transfer call \(attempt 1 of 5 failed: file_000\.bin: body cut short .*\) "
        r"in 0\.0\d s",
        download_lines[1][1],
    )
    assert re.fullmatch(rf"GET {base}{path}\S+ -> HTTP 206", download_lines[2][1])
    assert download_lines[3][1] == f"downloaded file_000.bin to {tmp_path / 'f.bin'}"


async def test_the_create_and_its_retry_are_logged_as_before(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.add("create", status=429, retry_after=0.01, times=1)
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with session_for(emu) as s:
        job = await s.create_job("ext", "run", {})
    url = f"{emu.base_url}/jobs/ext/run"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", f"attempt 1: POST {url}"),
        ("DEBUG", f"POST {url} -> HTTP 429"),
        (
            "WARNING",
            f"retrying create call (attempt 1 of 5 failed: POST {url} -> HTTP 429: "
            "Too many requests) in 0.01 s",
        ),
        ("DEBUG", f"attempt 2: POST {url}"),
        ("DEBUG", f"POST {url} -> HTTP 200"),
        ("INFO", f"created job {job.id} on chute ext method run"),
    ]


async def test_without_the_logging_hook_the_library_logs_no_request_or_retry(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    ins.clear_hooks()
    emu.faults.add("create", status=429, retry_after=0.01, times=1)
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with session_for(emu) as s:
        job = await s.create_job("ext", "run", {})
    assert [r.getMessage() for r in caplog.records] == [
        f"created job {job.id} on chute ext method run"  # not an event: logged directly
    ]


async def test_a_quiet_logger_costs_no_request_event(
    emu: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    record_builds(monkeypatch, ["RequestSent"], built)
    caplog.set_level(logging.INFO, logger="chutes_jobs")
    async with session_for(emu) as s:
        job = await s.create_job("ext", "run", {})
        assert built == []
        caplog.set_level(logging.DEBUG, logger="chutes_jobs")
        await job.refresh()
    assert len(built) == 1


@pytest.mark.parametrize("name", ALL_EVENTS)
def test_every_event_is_immutable_and_equal_by_value(name: str) -> None:
    """A hook cannot change what the hooks after it see, nor add to it (the classes keep
    their fields in a ``__dict__``, which must not make them writable)."""
    cls = getattr(ins, name)
    values = {field.name: f"value of {field.name}" for field in attrs.fields(cls)}
    event = cls(**values)
    assert event == cls(**values) and hash(event) == hash(cls(**values))
    for attribute in (next(iter(values)), "added"):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(event, attribute, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del event.__dict__
    assert attrs.asdict(event) == values
