"""``chutes_jobs.sync``, the blocking API, end to end on an emulator served from its own thread:
the lifecycle, threads, running event loops, re-entrance, Ctrl-C, iterators, lifecycle of the
session's loop thread, the worker side."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import hashlib
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import chutes_jobs
from chutes_jobs import sync
from chutes_jobs.emulator import Emulator
from chutes_jobs.errors import LedgerError
from chutes_jobs.sync import ChutesSession, JobHandle, PollPolicy, RetryPolicy

FAST_POLL = PollPolicy(initial=0.02, maximum=0.1)
MIB = 1 << 20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_job(session: ChutesSession, sizes: list[int]) -> tuple[JobHandle, dict[str, str]]:
    """A finished ``demo.files`` job and its ``{filename: sha256}``."""
    handle = session.create_job("demo", "files", {"sizes": sizes})
    job = handle.wait(poll=FAST_POLL)
    return handle, job.result["files"]


def tasks_left(session: ChutesSession) -> set[asyncio.Task[Any]]:
    """The tasks running on the session's loop, besides the one asking."""

    async def others() -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    return session._loop.run(others())


def loop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("chutes-jobs-sync-")]


# ----------------------------------------------------------------------------- the lifecycle


def test_a_job_from_create_to_delete(chutes_sync_session: ChutesSession, tmp_path: Path) -> None:
    s = chutes_sync_session
    handle = s.create_job("demo", "files", {"sizes": [MIB, 4096]})
    assert isinstance(handle, sync.JobHandle)
    states = [snapshot.state for snapshot in handle.watch(poll=FAST_POLL)]
    assert states[-1] is chutes_jobs.JobState.FINISHED
    assert len(states) == len(set(states))  # each state once
    final = handle.wait()
    assert final.job_id == handle.id and handle.job is final

    paths = handle.download_outputs(tmp_path)
    assert {name: sha256(path) for name, path in paths.items()} == final.result["files"]

    handle.delete()
    with pytest.raises(chutes_jobs.NotFoundError):
        s.job(handle.id).refresh()


def test_errors_are_the_async_apis(chutes_sync_session: ChutesSession) -> None:
    sleeping = chutes_sync_session.create_job("demo", "sleep", {"seconds": 30})
    with pytest.raises(chutes_jobs.JobTimeoutError) as timed_out:
        sleeping.wait(timeout=0.1, poll=FAST_POLL)
    assert timed_out.value.job_id == sleeping.id
    with pytest.raises(chutes_jobs.NotFoundError):
        chutes_sync_session.job("00000000-0000-4000-8000-000000000000").refresh()
    with pytest.raises(chutes_jobs.ConfigurationError, match="chute_id"):
        chutes_sync_session.create_job("a/b", "files")


def test_a_caller_owned_aiohttp_session_is_refused() -> None:
    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    http = asyncio.run(make())
    with pytest.raises(chutes_jobs.ConfigurationError, match="own event loop"):
        ChutesSession(base_url="http://127.0.0.1:9", session=http)
    assert loop_threads() == []


def test_from_env_builds_a_blocking_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUTES_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CHUTES_API_KEY", "cpk_test")
    session = ChutesSession.from_env(user_id="u1")
    assert type(session) is ChutesSession
    assert str(session.base_url) == "http://127.0.0.1:9"
    assert session.auth_kind == "api_key" and session.aio.user_id == "u1"


# ----------------------------------------------------------------------------- threads and loops


def test_sixteen_threads_download_through_one_session(
    chutes_sync_session: ChutesSession, tmp_path: Path
) -> None:
    handle, digests = files_job(chutes_sync_session, [256 * 1024] * 16)

    def download(name: str) -> Path:
        return handle.download(name, tmp_path / name)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        paths = list(pool.map(download, digests))
    assert {p.relative_to(tmp_path).as_posix(): sha256(p) for p in paths} == digests
    assert tasks_left(chutes_sync_session) == set()


def test_sixteen_threads_create_and_wait_through_one_session(
    chutes_sync_session: ChutesSession,
) -> None:
    def run(i: int) -> Any:
        return chutes_sync_session.create_job("demo", "echo", {"i": i}).wait(poll=FAST_POLL)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = [job.result["i"] for job in pool.map(run, range(32))]
    assert results == list(range(32))


def test_it_works_inside_a_running_event_loop(chutes_sync_session: ChutesSession) -> None:
    """A Jupyter cell runs in a loop: the blocking call holds that loop and returns."""

    async def cell() -> chutes_jobs.Job:
        return chutes_sync_session.create_job("demo", "echo", {"x": 1}).wait(poll=FAST_POLL)

    assert asyncio.run(cell()).result["x"] == 1


def test_from_run_in_executor_the_calling_loop_keeps_running(
    chutes_sync_session: ChutesSession,
) -> None:
    async def main() -> tuple[chutes_jobs.Job, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        ticker = asyncio.create_task(tick())
        loop = asyncio.get_running_loop()
        job = await loop.run_in_executor(
            None, lambda: chutes_sync_session.create_job("demo", "sleep", {"seconds": 0.2}).wait()
        )
        ticker.cancel()
        return job, ticks

    job, ticks = asyncio.run(main())
    assert job.result["slept"] == 0.2
    assert ticks > 1  # the loop ran while the sync call waited in the executor


def test_a_blocking_call_from_the_sessions_own_loop_is_refused(
    chutes_sync_session: ChutesSession, tmp_path: Path
) -> None:
    s = chutes_sync_session
    handle, digests = files_job(s, [2 * MIB])
    name = next(iter(digests))

    def progress(_: chutes_jobs.TransferProgress) -> None:
        s.job(handle.id).refresh()  # runs on the session's loop: would wait for itself

    with pytest.raises(chutes_jobs.BlockingCallError, match="await"):
        handle.download(name, tmp_path / name, progress=progress)
    assert tasks_left(s) == set()
    assert sha256(handle.download(name, tmp_path / "again")) == digests[name]  # still works


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_a_download_keeps_the_partial_and_leaves_no_task(
    chutes_sync_emulator: Emulator, tmp_path: Path, ctrl_c: Any
) -> None:
    emu = chutes_sync_emulator
    fast = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)
    with ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=fast) as s:
        handle, digests = files_job(s, [8 * MIB])
        (name,) = digests
        dest = tmp_path / name
        part = tmp_path / f"{name}.part"
        emu.faults.add("download", cut_after=3 * MIB)  # the first attempt drops
        emu.faults.add("download", latency=60)  # the retry hangs: Ctrl-C then
        with (
            ctrl_c(lambda: emu.counts["download"] >= 2),
            pytest.raises(KeyboardInterrupt),
        ):
            handle.download(name, dest)

        assert not dest.exists()
        kept = part.stat().st_size
        assert 0 < kept <= 3 * MIB
        assert tasks_left(s) == set()

        emu.faults.clear()
        assert sha256(handle.download(name, dest)) == digests[name]
        ranges = [r.headers.get("Range") for r in emu.requests if r.route == "download"]
        assert ranges[-1] == f"bytes={kept}-"  # resumed where the interrupted one stopped


def test_ctrl_c_during_submit_many_leaves_its_ledger_consistent(
    chutes_sync_emulator: Emulator, tmp_path: Path, ctrl_c: Any
) -> None:
    emu = chutes_sync_emulator
    ledger = tmp_path / "run.db"
    inputs = [{"i": i} for i in range(20)]
    emu.faults.add("create", latency=0.1, times=None)
    with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as s:
        seen: list[sync.BulkResult] = []
        with ctrl_c(lambda: emu.counts["create"] >= 4), pytest.raises(KeyboardInterrupt):
            seen.extend(s.submit_many("demo", "echo", inputs, concurrency=2, ledger=ledger))
        assert len(seen) < len(inputs)
        assert tasks_left(s) == set()
        interrupted = emu.counts["create"]

        emu.faults.clear()
        rerun = list(s.submit_many("demo", "echo", inputs, concurrency=4, ledger=ledger))
    assert sorted(r.index for r in rerun) == list(range(20))
    assert all(r.ok for r in rerun)
    assert sum(r.resumed for r in rerun) == interrupted  # every create made was recorded
    assert emu.counts["create"] == len(inputs)  # and none was made twice


# ----------------------------------------------------------------------------- iterators


def test_leaving_submit_many_early_stops_the_run_and_frees_its_ledger(
    chutes_sync_emulator: Emulator, chutes_sync_session: ChutesSession, tmp_path: Path
) -> None:
    ledger = tmp_path / "run.db"
    inputs = [{"i": i} for i in range(50)]
    with closing(
        chutes_sync_session.submit_many("demo", "echo", inputs, concurrency=2, ledger=ledger)
    ) as results:
        first = next(results)
    assert isinstance(first, sync.BulkResult) and isinstance(first.handle, sync.JobHandle)
    assert tasks_left(chutes_sync_session) == set()
    # A run stopped cleanly has released its ledger: the next run may take it at once.
    rest = list(chutes_sync_session.submit_many("demo", "echo", inputs, ledger=ledger))
    assert len(rest) == 50 and all(r.ok for r in rest)
    assert chutes_sync_emulator.counts["create"] == 50  # what the first run made was recorded


def test_a_bulk_result_handle_is_blocking(chutes_sync_session: ChutesSession) -> None:
    (result,) = chutes_sync_session.submit_many("demo", "echo", [{"x": 2}])
    assert result.job_id == result.handle.id  # type: ignore[union-attr]
    assert isinstance(result, chutes_jobs.BulkResult)
    assert result.handle is not None and result.handle.wait(poll=FAST_POLL).result["x"] == 2


# ----------------------------------------------------------------------------- the ledger


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_ledger_is_a_blocking_job_book(
    chutes_sync_session: ChutesSession, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    where = tmp_path / "run.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    inputs = [{"i": i} for i in range(5)]
    results = list(chutes_sync_session.submit_many("demo", "echo", inputs, wait=True, ledger=where))
    with sync.Ledger.open(where) as book:
        summary = book.summary()
        assert isinstance(summary, sync.LedgerSummary)
        assert summary.total == 5 and summary.counts[sync.LedgerState.FINISHED] == 5
        entries = book.entries(state=sync.LedgerState.FINISHED)
        assert [e.input_index for e in entries] == [0, 1, 2, 3, 4]
        assert {e.job_id for e in entries} == {r.job_id for r in results}
        assert book.entries(state=sync.LedgerState.UNKNOWN) == []
        assert book.get(entries[0].key) == entries[0]
        assert str(where).split("@")[-1].split("?")[0] in book.location
    assert all(t.name != "chutes-jobs-sync-ledger" for t in threading.enumerate())


def test_opening_a_ledger_that_cannot_be_opened_leaves_no_thread(tmp_path: Path) -> None:
    with pytest.raises(LedgerError):
        sync.Ledger.open(tmp_path)  # a folder
    assert all(t.name != "chutes-jobs-sync-ledger" for t in threading.enumerate())


# ----------------------------------------------------------------------------- the loop thread


def test_close_stops_the_thread_and_a_later_call_starts_one(chutes_sync_emulator: Emulator) -> None:
    emu = chutes_sync_emulator
    session = ChutesSession(base_url=emu.base_url, api_key=emu.api_key)
    assert loop_threads() == []  # nothing starts before the first call
    with session:
        session.create_job("demo", "echo")
        assert len(loop_threads()) == 1
    assert loop_threads() == []
    assert session.create_job("demo", "echo", {"y": 1}).wait(poll=FAST_POLL).result["y"] == 1
    session.close()
    assert loop_threads() == []


def test_an_unclosed_session_is_closed_when_collected(chutes_sync_emulator: Emulator) -> None:
    emu = chutes_sync_emulator
    session = ChutesSession(base_url=emu.base_url, api_key=emu.api_key)
    session.create_job("demo", "echo")
    assert len(loop_threads()) == 1
    del session
    gc.collect()
    assert loop_threads() == []


# ----------------------------------------------------------------------------- the worker side


@pytest.fixture
def worker_job(chutes_sync_emulator: Emulator, chutes_sync_session: ChutesSession) -> str:
    """The status URL of a job left to an outside worker (this test)."""
    chutes_sync_emulator.add_chute("ext", {"run": None})
    return chutes_sync_emulator.job_status_url(chutes_sync_session.create_job("ext", "run").id)


def test_run_and_report_runs_a_plain_function_in_a_thread(
    worker_job: str, chutes_sync_session: ChutesSession, tmp_path: Path
) -> None:
    threads: list[str] = []

    def fn(*, output_dir: Path, n: int) -> dict[str, int]:
        threads.append(threading.current_thread().name)
        (output_dir / "out.txt").write_text("x" * n)
        return {"n": n}

    final = sync.run_and_report(worker_job, fn, n=7)
    assert final.result["n"] == 7 and final.is_finished
    assert not threads[0].startswith("chutes-jobs-")  # a worker thread, not the loop's
    handle = chutes_sync_session.job(final.job_id)
    paths = handle.download_outputs(tmp_path)
    assert paths["out.txt"].read_text() == "x" * 7


def test_run_and_report_on_a_handle_awaits_an_async_function(
    worker_job: str, chutes_sync_session: ChutesSession
) -> None:
    async def fn(*, output_dir: Path) -> str:
        await asyncio.sleep(0)
        return "done"

    handle = chutes_sync_session.job_from_status_url(worker_job)
    assert handle.run_and_report(fn).result["result"] == "done"


def test_worker_calls_one_by_one(
    worker_job: str, chutes_sync_session: ChutesSession, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("a")
    handle = chutes_sync_session.job_from_status_url(worker_job)
    targets = handle.finish(result={"ok": True}, outputs=tmp_path)
    report = handle.upload_outputs(targets)
    assert report.ok
    final = handle.complete()
    assert final.is_finished and not final.failed
