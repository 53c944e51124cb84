"""``finish`` refuses output names the live server stores but can never serve back (issue 19):
its download names the file in a ``Content-Disposition`` header, which answers 500 for a name
that is not latin-1 or holds a newline (or, as uvicorn refuses, another control character)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chutes_jobs import ChutesSession, ConfigurationError, JobOutcome, OutputNameError
from chutes_jobs.emulator import Emulator
from chutes_jobs.polling import PollPolicy
from chutes_jobs.transfer.outputs import check_output_names, output_name_problem
from chutes_jobs.transfer.paths import lexical_problem as _lexical_problem

FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
UNSERVABLE = {
    "名前.txt": "not latin-1",
    "party-🎉.bin": "not latin-1",
    "two\nlines.txt": "a newline",
    "carriage\rreturn.txt": "a carriage return",
    "bell\x07.txt": "the control character '\\x07'",
    "del\x7f.txt": "the control character '\\x7f'",
}


def _servable(name: str) -> bool:
    """The live download's rule, written independently of the library's."""
    try:
        name.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in name)


@pytest.fixture
def ext(chutes_emulator: Emulator) -> Emulator:
    chutes_emulator.add_chute("ext", {"run": None})
    return chutes_emulator


async def test_finish_refuses_each_unservable_name_and_sends_nothing(
    ext: Emulator, chutes_session: ChutesSession, tmp_path: Path
) -> None:
    handle = await chutes_session.create_job("ext", "run")
    worker = chutes_session.job_from_status_url(ext.job_status_url(handle.id))
    source = tmp_path / "f"
    source.write_text("x")
    outputs = {name: source for name in [*UNSERVABLE, "fine/ok é.txt", "../escape.txt"]}
    with pytest.raises(OutputNameError) as caught:
        await worker.finish(outputs=outputs)
    problems = caught.value.problems
    assert set(problems) == {*UNSERVABLE, "../escape.txt"}  # every bad name, no good one
    for name, why in UNSERVABLE.items():
        assert why in problems[name] and repr(name) in str(caught.value)
    assert "'..'" in problems["../escape.txt"]
    assert isinstance(caught.value, ConfigurationError)
    assert ext.counts["finish"] == 0  # nothing was sent
    # the latin-1 name with a tab and an accent is fine, and round-trips
    fine = {"fine/ok é.txt": source, "tab\there.txt": source}
    targets = await worker.finish(outputs=fine)
    assert (await worker.upload_outputs(targets)).ok
    await worker.complete()
    paths = await handle.download_outputs(tmp_path / "out")
    assert sorted(paths) == sorted(fine)


async def test_a_directory_with_unservable_names_is_refused_whole(
    ext: Emulator, chutes_session: ChutesSession, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "名前.txt").write_text("a")
    (out / "line\nbreak.txt").write_text("b")
    (out / "good.txt").write_text("c")
    handle = await chutes_session.create_job("ext", "run")
    worker = chutes_session.job_from_status_url(ext.job_status_url(handle.id))
    with pytest.raises(OutputNameError) as caught:
        await worker.finish(outputs=out)
    assert set(caught.value.problems) == {"sub/名前.txt", "line\nbreak.txt"}
    assert ext.counts["finish"] == 0


async def test_run_and_report_reports_the_refusal_as_a_failure(
    ext: Emulator, chutes_session: ChutesSession
) -> None:
    async def writes_a_bad_name(*, output_dir: Path) -> dict[str, int]:
        (output_dir / "名前.txt").write_text("a")
        return {"v": 1}

    handle = await chutes_session.create_job("ext", "run")
    worker = chutes_session.job_from_status_url(ext.job_status_url(handle.id))
    await worker.run_and_report(writes_a_bad_name)
    job = await handle.wait(poll=FAST_POLL, raise_on_failure=False)
    assert job.outcome is JobOutcome.FAILED and job.output_files == {}
    assert "'名前.txt': not latin-1" in (job.outcome_detail or "")


@settings(max_examples=400, derandomize=True, database=None)
@given(st.text(max_size=12))
def test_the_name_rule_matches_the_servers(name: str) -> None:
    problem = output_name_problem(name)
    safe = _lexical_problem(name) is None
    assert (problem is None) == (safe and _servable(name)), (name, problem)
    if problem is not None:
        with pytest.raises(OutputNameError) as caught:
            check_output_names(["ok.txt", name])
        assert list(caught.value.problems) == [name]


_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\\\x00"), min_size=1, max_size=10
).filter(lambda n: n not in (".", ".."))


@settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_names, min_size=1, max_size=6, unique=True))
def test_every_name_finish_accepts_can_be_downloaded(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    """The fault the issue reports (names that upload fine, then never download) cannot happen:
    a name is either refused before anything is sent, or it round-trips."""
    work = tmp_path_factory.mktemp("names")
    asyncio.run(_round_trip(names, work))


async def _round_trip(names: list[str], work: Path) -> None:
    source = work / "src"
    source.write_bytes(b"payload")
    async with Emulator(schedule_delay=0.01) as emu:
        emu.add_chute("ext", {"run": None})
        async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as session:
            handle = await session.create_job("ext", "run")
            worker = session.job_from_status_url(emu.job_status_url(handle.id))
            accepted = {n: source for n in names if output_name_problem(n) is None}
            refused = [n for n in names if n not in accepted]
            if refused:
                with pytest.raises(OutputNameError) as caught:
                    await worker.finish(outputs={n: source for n in names})
                assert set(caught.value.problems) == set(refused)
                assert emu.counts["finish"] == 0
            targets = await worker.finish(outputs=accepted)
            assert (await worker.upload_outputs(targets)).ok
            await worker.complete()
            paths = await handle.download_outputs(work / "out")
            assert sorted(paths) == sorted(accepted)
            assert all(p.read_bytes() == b"payload" for p in paths.values())
