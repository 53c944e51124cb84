"""What the instrumentation events say, end to end on the emulator over loopback HTTP.

Requests (route templates, statuses, attempts), retries, job state changes, transfers (bytes,
resume offsets), operations and their outcomes, bulk counters; and that no event holds a
secret. Route templates are also fuzzed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

from chutes_jobs import (
    BulkOutcome,
    ChutesSession,
    JobFailedError,
    JobState,
    JobTimeoutError,
    RetryPolicy,
    ServerError,
)
from chutes_jobs import instrumentation as ins
from chutes_jobs._http.routes import route_template
from chutes_jobs.emulator import Emulator
from chutes_jobs.polling import PollPolicy

FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)
E = TypeVar("E")


@pytest.fixture(autouse=True)
def no_process_hooks() -> Iterator[None]:
    """Only the session's own hooks: the emulator's worker session sends nothing here."""
    before = ins.get_hooks()
    ins.clear_hooks()
    yield
    ins.clear_hooks()
    for hook in before:
        ins.add_hook(hook)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(schedule_delay=0.01, expose_status=True) as emulator:
        emulator.add_chute("ext", {"run": None})  # jobs finished by the test, as the worker
        yield emulator


@pytest_asyncio.fixture
async def events() -> list[Any]:
    return []


@pytest_asyncio.fixture
async def session(emu: Emulator, events: list[Any]) -> AsyncIterator[ChutesSession]:
    async with ChutesSession(
        base_url=emu.base_url, api_key=emu.api_key, retry_policy=FAST_RETRY, hooks=[events.append]
    ) as s:
        yield s


def of(events: list[Any], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


# ----------------------------------------------------------------------------- requests, jobs


async def test_create_wait_download_tells_each_step(
    session: ChutesSession, events: list[Any], tmp_path: Path
) -> None:
    job = await session.create_job("demo", "files", {"sizes": [5000, 70_000]})
    await job.wait(timeout=30, poll=FAST_POLL)
    await job.download_outputs(tmp_path)

    sent = of(events, ins.RequestSent)
    assert sent[0].route == "/jobs/{chute_id}/{method}" and sent[0].call_kind == "create"
    routes = {(e.method, e.route, e.call_kind) for e in sent}
    assert routes == {
        ("POST", "/jobs/{chute_id}/{method}", "create"),
        ("GET", "/jobs/{job_id}", "read"),
        ("GET", "/jobs/{job_id}/download/{file_id}", "transfer"),
    }
    answered = of(events, ins.RequestAnswered)
    # each request answered once (the downloads run concurrently: any order)
    assert sorted(id(a.request) for a in answered) == sorted(id(e) for e in sent)
    assert all(a.status == 200 and a.error_type is None and a.duration > 0 for a in answered)

    changes = [(c.from_state, c.to_state) for c in of(events, ins.JobStateChanged)]
    assert changes[0] == (None, JobState.PENDING)
    assert changes[-1][1] is JobState.FINISHED
    assert all(c.job_id == job.id for c in of(events, ins.JobStateChanged))

    ended = {e.file: e for e in of(events, ins.TransferEnded)}
    assert set(ended) == {"file_000.bin", "sub/file_001.bin"}
    assert (ended["file_000.bin"].bytes, ended["file_000.bin"].size) == (5000, 5000)
    assert (ended["sub/file_001.bin"].bytes, ended["sub/file_001.bin"].resumed_from) == (70_000, 0)
    assert ended["sub/file_001.bin"].path == str(tmp_path / "sub" / "file_001.bin")
    assert all(e.direction == "download" and e.error_type is None for e in ended.values())

    operations = [
        (o.operation.name, o.operation.file, o.outcome) for o in of(events, ins.OperationEnded)
    ]
    assert operations[0] == ("wait", None, "finished")
    assert sorted(operations[1:]) == [
        ("download", "file_000.bin", "ok"),
        ("download", "sub/file_001.bin", "ok"),
        ("download_outputs", None, "ok"),
    ]


async def test_a_retried_429_on_create_tells_the_retry_and_both_attempts(
    emu: Emulator, session: ChutesSession, events: list[Any]
) -> None:
    emu.faults.add("create", status=429, retry_after=0.01, times=1)
    await session.create_job("demo", "echo", {})
    (retry,) = of(events, ins.RetryScheduled)
    assert (retry.call_kind, retry.attempt, retry.max_attempts, retry.delay) == (
        "create",
        1,
        5,
        0.01,
    )
    assert (retry.status, retry.error_type) == (429, "chutes_jobs.errors.RateLimitError")
    assert "429" in retry.reason
    answered = of(events, ins.RequestAnswered)
    assert [(a.request.attempt, a.status) for a in answered] == [(1, 429), (2, 200)]
    assert answered[0].error_type == "chutes_jobs.errors.RateLimitError"


async def test_a_retried_get_tells_its_kind(
    emu: Emulator, session: ChutesSession, events: list[Any]
) -> None:
    job = await session.create_job("ext", "run", {})
    emu.faults.add("get", status=503, retry_after=0.01, times=2)
    await job.refresh()
    retries = of(events, ins.RetryScheduled)
    assert [(r.call_kind, r.attempt, r.status) for r in retries] == [
        ("read", 1, 503),
        ("read", 2, 503),
    ]


async def test_a_resumed_download_tells_where_it_resumed(
    emu: Emulator, session: ChutesSession, events: list[Any], tmp_path: Path
) -> None:
    job = await session.create_job("demo", "files", {"sizes": [300_000]})
    await job.wait(timeout=30, poll=FAST_POLL)
    emu.faults.add("download", cut_after=100_000)
    events.clear()
    await job.download("file_000.bin", tmp_path / "out.bin")

    attempts = of(events, ins.RequestAnswered)
    assert [(a.request.attempt, a.status) for a in attempts] == [(1, 200), (2, 206)]
    assert attempts[0].error_type == "chutes_jobs.errors.IncompleteTransferError"
    (retry,) = of(events, ins.RetryScheduled)
    assert retry.call_kind == "transfer"
    (ended,) = of(events, ins.TransferEnded)
    assert ended.resumed_from >= 100_000  # what the cut left (aiohttp may keep a little less)
    assert (ended.bytes, ended.size, ended.error_type) == (300_000, 300_000, None)


async def test_a_download_resuming_a_part_left_by_an_earlier_call_counts_only_new_bytes(
    emu: Emulator, session: ChutesSession, events: list[Any], tmp_path: Path
) -> None:
    job = await session.create_job("demo", "files", {"sizes": [200_000]})
    await job.wait(timeout=30, poll=FAST_POLL)
    emu.faults.add("download", cut_after=50_000)
    emu.faults.add("download", status=500, times=None)  # then no progress: the budget ends
    with pytest.raises(ServerError):
        await job.download("file_000.bin", tmp_path / "out.bin")
    failed = of(events, ins.TransferEnded)[-1]
    assert failed.error_type is not None and failed.size is None
    assert failed.bytes == (await asyncio.to_thread((tmp_path / "out.bin.part").stat)).st_size
    emu.faults.clear()
    events.clear()
    await job.download("file_000.bin", tmp_path / "out.bin")
    (ended,) = of(events, ins.TransferEnded)
    assert ended.resumed_from == failed.bytes
    assert ended.bytes == 200_000 - failed.bytes


async def test_progress_events_follow_the_transfer(
    session: ChutesSession, events: list[Any], tmp_path: Path
) -> None:
    job = await session.create_job("demo", "files", {"sizes": [3 * 1024 * 1024]})
    await job.wait(timeout=30, poll=FAST_POLL)
    seen: list[int] = []
    await job.download("file_000.bin", tmp_path / "f", progress=lambda p: seen.append(p.done))
    progress = of(events, ins.TransferProgressed)
    assert [p.done for p in progress] == seen  # the caller's callback still gets every report
    assert progress[-1].done == progress[-1].total == 3 * 1024 * 1024
    assert {(p.direction, p.job_id, p.file) for p in progress} == {
        ("download", job.id, "file_000.bin")
    }


# ----------------------------------------------------------------------------- operations


async def test_wait_outcomes_failed_timeout_and_cancelled(
    session: ChutesSession, events: list[Any]
) -> None:
    failing = await session.create_job("demo", "fail", {})
    with pytest.raises(JobFailedError):
        await failing.wait(timeout=30, poll=FAST_POLL)
    await failing.wait(timeout=30, poll=FAST_POLL, raise_on_failure=False)
    stuck = await session.create_job("ext", "run", {})
    with pytest.raises(JobTimeoutError):
        await stuck.wait(timeout=0.05, poll=FAST_POLL)
    waiting = asyncio.create_task(stuck.wait(poll=FAST_POLL))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    ended = [(o.outcome, o.error_type) for o in of(events, ins.OperationEnded)]
    assert ended == [
        ("failed", "chutes_jobs.errors.JobFailedError"),
        ("failed", None),
        ("timeout", "chutes_jobs.errors.JobTimeoutError"),
        ("cancelled", "asyncio.exceptions.CancelledError"),
    ]


async def test_the_workers_uploads_are_told_and_never_show_the_token(
    emu: Emulator, tmp_path: Path
) -> None:
    events: list[Any] = []
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as user:
        job = await user.create_job("ext", "run", {})
    status_url = emu.job_status_url(job.id)
    token = yarl.URL(status_url).query["token"]
    out = tmp_path / "out"
    await asyncio.to_thread(out.mkdir)
    await asyncio.to_thread((out / "a.txt").write_bytes, b"a" * 1000)
    await asyncio.to_thread((out / "b.txt").write_bytes, b"b" * 2000)
    async with ChutesSession(
        base_url=emu.base_url, retry_policy=FAST_RETRY, hooks=[events.append]
    ) as worker:
        handle = worker.job_from_status_url(status_url)
        targets = await handle.finish(result={"ok": 1}, outputs=out)
        report = await handle.upload_outputs(targets)
        final = await handle.complete()
    assert report.ok and final.is_finished
    uploads = {e.file: e for e in of(events, ins.TransferEnded)}
    assert {n: (e.direction, e.bytes, e.job_id) for n, e in uploads.items()} == {
        "a.txt": ("upload", 1000, job.id),
        "b.txt": ("upload", 2000, job.id),
    }
    ops = sorted((o.operation.name, o.outcome) for o in of(events, ins.OperationEnded))
    assert ops == [("upload", "ok"), ("upload", "ok"), ("upload_outputs", "ok")]
    puts = [e for e in of(events, ins.RequestSent) if e.route == "/jobs/{job_id}/upload"]
    assert len(puts) == 2
    assert all(e.url.query["token"] == "***" for e in of(events, ins.RequestSent))
    assert not [e for e in events if token in repr(e)]
    assert of(events, ins.JobStateChanged)[-1].to_state is JobState.FINISHED


# ----------------------------------------------------------------------------- bulk


async def test_bulk_counters_end_with_the_runs_totals(
    session: ChutesSession, events: list[Any]
) -> None:
    inputs: list[Any] = [{"i": i} for i in range(12)]
    inputs[3] = "not a mapping"
    results = [r async for r in session.submit_many("demo", "echo", inputs, wait=True)]
    by_outcome = {o: sum(r.outcome is o for r in results) for o in BulkOutcome}
    counters = of(events, ins.BulkCounters)
    final = counters[-1]
    assert final.final and not any(c.final for c in counters[:-1])
    assert (final.finished, final.not_submitted, final.taken) == (11, 1, 12)
    assert by_outcome[BulkOutcome.FINISHED] == 11
    assert len({c.run for c in counters}) == 1
    (run,) = [o for o in of(events, ins.OperationEnded) if o.operation.name == "submit_many"]
    assert run.outcome == "ok"
    again = [r async for r in session.submit_many("demo", "echo", [{"i": 0}])]
    assert again[0].ok and of(events, ins.BulkCounters)[-1].run != final.run


async def test_a_run_stopped_early_still_ends_with_final_counters(
    session: ChutesSession, events: list[Any]
) -> None:
    results = session.submit_many("demo", "echo", ({"i": i} for i in range(1000)), concurrency=4)
    async with aclosing(results):
        async for _ in results:
            break
    final = of(events, ins.BulkCounters)[-1]
    assert final.final and final.taken >= 1
    (run,) = [o for o in of(events, ins.OperationEnded) if o.operation.name == "submit_many"]
    assert run.outcome == "cancelled"


# ----------------------------------------------------------------------------- route templates

BASE = yarl.URL("https://api.example/v1")


@pytest.mark.parametrize(
    ("method", "target", "template"),
    [
        ("POST", "/jobs/demo/files", "/v1/jobs/{chute_id}/{method}"),
        ("GET", "/jobs/abc", "/v1/jobs/{job_id}"),
        ("DELETE", "jobs/abc", "/v1/jobs/{job_id}"),
        ("PUT", "/jobs/abc/upload", "/v1/jobs/{job_id}/upload"),
        ("GET", "/jobs/abc/download/f1", "/v1/jobs/{job_id}/download/{file_id}"),
        ("GET", yarl.URL("https://api.example/v1/jobs/abc"), "/v1/jobs/{job_id}"),
        ("PUT", yarl.URL("https://store.example/jobs/abc/upload"), "/jobs/{job_id}/upload"),
        ("GET", "/jobs/demo/files", None),
        ("GET", "/chutes/x", None),
        ("GET", "/jobs/", None),
        ("POST", "https://api.example/v1/jobs/abc/upload", "/v1/jobs/{chute_id}/{method}"),
    ],
)
def test_route_templates(method: str, target: Any, template: str | None) -> None:
    assert route_template(method, target, BASE) == template


segment = st.text(alphabet="abcdef0123456789-_.~", min_size=1, max_size=40).filter(
    lambda s: s not in (".", "..")  # refused as ids before any request
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(job=segment, file=segment, prefix=st.sampled_from(["", "/api", "/a/b"]))
def test_any_ids_give_one_of_the_templates(job: str, file: str, prefix: str) -> None:
    base = yarl.URL(f"https://h.example{prefix}")
    for method, path, shape in [
        ("GET", f"/jobs/{job}", "/jobs/{job_id}"),
        ("POST", f"/jobs/{job}/{file}", "/jobs/{chute_id}/{method}"),
        ("GET", f"/jobs/{job}/download/{file}", "/jobs/{job_id}/download/{file_id}"),
        ("PUT", f"/jobs/{job}/upload", "/jobs/{job_id}/upload"),
    ]:
        for target in (path, base.with_path(f"{prefix}{path}")):
            assert route_template(method, target, base) == prefix + shape
