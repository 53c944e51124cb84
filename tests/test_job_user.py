"""JobHandle from the user's side, end to end on the emulator over loopback HTTP.

create, wait, watch and delete as a user sees them: what is refused before sending, what the
server answers, which errors carry what, and that the job itself is left as it should be.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from chutes_jobs import (
    ChutesSession,
    ConfigurationError,
    DeleteFailedError,
    InstanceSummary,
    JobFailedError,
    JobOutcome,
    JobState,
    JobTimeoutError,
    NotFoundError,
    ProtocolError,
    RetryPolicy,
    ServerError,
)
from chutes_jobs.emulator import Emulator
from chutes_jobs.job import JobHandle
from chutes_jobs.polling import PollPolicy

#: Polls fast so tests spend their time on the behaviour, not on sleeping.
FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
#: Retries without the production backoff.
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)


def session_for(emu: Emulator, **settings: Any) -> ChutesSession:
    return ChutesSession(
        base_url=emu.base_url, api_key=emu.api_key, retry_policy=FAST_RETRY, **settings
    )


class Gate:
    """A local chute method that runs until the test opens the gate."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self, output_dir: Path, **args: Any) -> dict[str, Any]:
        self.started.set()
        await self.opened.wait()
        return {"ok": True, "args": args}


@pytest.fixture
def gate(chutes_emulator: Emulator) -> Gate:
    gated = Gate()
    chutes_emulator.add_chute("gated", {"run": gated.run})
    return gated


async def _wait_for(predicate: Callable[[], bool]) -> None:
    """Until ``predicate()`` holds (no deadline of its own: pytest's timeout applies)."""
    while not predicate():
        await asyncio.sleep(0.005)


# ----------------------------------------------------------------------------- create


@pytest.mark.parametrize("disk_gb", [10, 1000, True, "20", 9.99, float("nan"), -5])
async def test_bad_disk_size_is_refused_before_sending(
    chutes_emulator: Emulator, chutes_session: ChutesSession, disk_gb: Any
) -> None:
    with pytest.raises(ConfigurationError, match="disk_gb"):
        await chutes_session.create_job("demo", "echo", {}, disk_gb=disk_gb)
    with pytest.raises(ConfigurationError, match="disk_gb"):
        await chutes_session.create_job("demo", "echo", {"_disk_gb": disk_gb})
    assert chutes_emulator.counts["create"] == 0
    assert chutes_emulator.store.jobs == {}


@pytest.mark.parametrize(("disk_gb", "stored"), [(None, 10), (11, 11), (999.5, 999)])
async def test_disk_size_sent_and_stored(
    chutes_session: ChutesSession, disk_gb: float | None, stored: int
) -> None:
    handle = await chutes_session.create_job("demo", "echo", {"x": 1}, disk_gb=disk_gb)
    assert handle.job is not None
    assert handle.job.job_args == {"x": 1, "_disk_gb": stored}


async def test_disk_size_given_twice_is_refused(chutes_session: ChutesSession) -> None:
    with pytest.raises(ConfigurationError, match="either"):
        await chutes_session.create_job("demo", "echo", {"_disk_gb": 20}, disk_gb=30)


@pytest.mark.parametrize("args", [[1, 2], "prompt", 3, {1: "a"}])
async def test_args_that_are_not_a_json_object_are_refused(
    chutes_emulator: Emulator, chutes_session: ChutesSession, args: Any
) -> None:
    with pytest.raises(ConfigurationError, match="args"):
        await chutes_session.create_job("demo", "echo", args)
    assert chutes_emulator.counts["create"] == 0


async def test_create_by_name_and_by_id(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    by_name = await chutes_session.create_job("demo", "echo", {"n": 1})
    assert chutes_emulator.demo_chute_id is not None
    by_id = await chutes_session.create_job(chutes_emulator.demo_chute_id, "echo", {"n": 2})
    for handle, n in [(by_name, 1), (by_id, 2)]:
        assert handle.job is not None and handle.job.state is JobState.PENDING
        assert handle.job.chute_id == chutes_emulator.demo_chute_id
        assert handle.job.method == "echo"
        done = await handle.wait(poll=FAST_POLL)
        assert done.result == {"n": n, "chutes_jobs": {"status": "complete"}}
    assert chutes_emulator.counts["create"] == 2


async def test_unknown_chute_or_method(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    with pytest.raises(NotFoundError, match="Chute nope not found") as caught:
        await chutes_session.create_job("nope", "echo")
    assert caught.value.status == 404
    assert caught.value.attempts == 1  # a create is never blindly re-sent
    with pytest.raises(NotFoundError, match="Chute demo not found"):
        await chutes_session.create_job("demo", "no_such_method")
    assert chutes_emulator.store.jobs == {}


@pytest.mark.parametrize(
    ("chute_id", "method"), [("my chute", "echo"), ("demo", "echo?x=1"), ("demo", "echo#x")]
)
async def test_path_segments_are_quoted(
    chutes_emulator: Emulator, chutes_session: ChutesSession, chute_id: str, method: str
) -> None:
    """Spaces, ``?`` and ``#`` stay inside their segment: the create route says 404."""
    with pytest.raises(NotFoundError, match=f"Chute {chute_id} not found"):
        await chutes_session.create_job(chute_id, method)
    assert chutes_emulator.store.jobs == {}
    assert chutes_emulator.counts == {"create": 1}


@pytest.mark.parametrize("bad", [".", "..", "", "a\x00b", "a/b", "x/download", "../x"])
async def test_segments_that_cannot_be_sent_are_refused(
    chutes_emulator: Emulator, chutes_session: ChutesSession, bad: str
) -> None:
    """A quoted ``/`` is decoded by the server before routing: it would reach another route."""
    with pytest.raises(ConfigurationError):
        await chutes_session.create_job(bad, "echo")
    with pytest.raises(ConfigurationError):
        await chutes_session.create_job("demo", bad)
    with pytest.raises(ConfigurationError):
        chutes_session.job(bad)
    assert not chutes_emulator.requests


async def test_an_answer_that_is_not_a_job_is_a_protocol_error(http_mock: aioresponses) -> None:
    """A read is retried until the policy is spent; a create is never sent twice."""
    base = "https://api.example.test"
    http_mock.get(f"{base}/jobs/j1", payload=["not", "a", "job"], repeat=True)
    http_mock.get(f"{base}/jobs/j2", payload={"no_job_id": True}, repeat=True)
    http_mock.post(f"{base}/jobs/c/m", payload={"no_job_id": True}, repeat=True)
    async with ChutesSession(base_url=base, api_key="cpk_test", retry_policy=FAST_RETRY) as s:
        with pytest.raises(ProtocolError, match=r"got JSON of another type \(list\)") as info:
            await s.job("j1").refresh()
        assert info.value.attempts == FAST_RETRY.max_attempts
        with pytest.raises(ProtocolError, match="not a Job object") as info:
            await s.job("j2").refresh()
        assert info.value.attempts == FAST_RETRY.max_attempts
        with pytest.raises(ProtocolError, match="not a Job object") as info:
            await s.create_job("c", "m")
        assert info.value.attempts == 1


# ----------------------------------------------------------------------------- wait


async def test_wait_deadline_leaves_the_job_running(
    chutes_emulator: Emulator, chutes_session: ChutesSession, gate: Gate
) -> None:
    handle = await chutes_session.create_job("gated", "run", {"k": "v"})
    await gate.started.wait()
    with pytest.raises(JobTimeoutError, match="keeps running") as caught:
        await handle.wait(timeout=0.1, poll=FAST_POLL)
    assert caught.value.job_id == handle.id
    assert caught.value.last is not None and not caught.value.last.is_finished
    assert chutes_emulator.job(handle.id).status == "running"  # not cancelled, not deleted
    assert chutes_emulator.counts["delete"] == 0

    gate.opened.set()
    done = await handle.wait(poll=FAST_POLL)
    assert done.is_finished and done.result == {
        "ok": True,
        "args": {"k": "v"},
        "chutes_jobs": {"status": "complete"},
    }


@pytest.mark.parametrize("use_wait_for", [True, False])
async def test_cancelled_wait_leaves_the_session_usable(
    chutes_session: ChutesSession, gate: Gate, use_wait_for: bool
) -> None:
    handle = await chutes_session.create_job("gated", "run")
    if use_wait_for:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(handle.wait(poll=FAST_POLL), 0.05)
    else:
        task = asyncio.create_task(handle.wait(poll=FAST_POLL))
        await gate.started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not (await handle.refresh()).is_finished
    gate.opened.set()
    assert (await handle.wait(poll=FAST_POLL)).result == {
        "ok": True,
        "args": {},
        "chutes_jobs": {"status": "complete"},
    }


async def test_failed_job_raises_with_status_and_detail() -> None:
    async with Emulator(expose_status=True, schedule_delay=0.01) as emu, session_for(emu) as s:
        handle = await s.create_job("demo", "fail", {"message": "out of unicorns"})
        with pytest.raises(JobFailedError, match="out of unicorns") as caught:
            await handle.wait(poll=FAST_POLL)
        job = caught.value.job
        assert job.status == "error" and job.failed
        assert job.error_detail is not None and "out of unicorns" in job.error_detail
        assert "'error'" in str(caught.value)

        quiet = await handle.wait(poll=FAST_POLL, raise_on_failure=False)
        assert quiet.failed and quiet.status == "error"


async def test_failed_job_without_status_is_failed_from_its_record(
    chutes_session: ChutesSession,
) -> None:
    """The live JSON has no status: the worker's record in ``result`` tells the failure."""
    handle = await chutes_session.create_job("demo", "fail")
    with pytest.raises(JobFailedError, match="RuntimeError: demo failure") as caught:
        await handle.wait(poll=FAST_POLL)
    job = caught.value.job
    assert job.is_finished and job.status is None and job.outcome is JobOutcome.FAILED
    assert caught.value.detail == "RuntimeError: demo failure"


async def test_missing_output_fails_the_wait_without_status(
    chutes_emulator: Emulator, chutes_session: ChutesSession, tmp_path: Path
) -> None:
    """Live-shaped JSON: a listed output that never arrived is how a failure shows."""
    chutes_emulator.add_chute("ext", {"run": None})
    handle = await chutes_session.create_job("ext", "run")
    worker = chutes_session.job_from_status_url(chutes_emulator.job_status_url(handle.id))
    (tmp_path / "a.txt").write_text("a")
    await worker.finish(result={}, outputs={"a.txt": tmp_path / "a.txt"})
    await worker.complete()  # without uploading
    with pytest.raises(JobFailedError):
        await handle.wait(poll=FAST_POLL)


# ----------------------------------------------------------------------------- watch


def _claim(emu: Emulator, job_id: str) -> None:
    """Put a pending job on an instance, as the emulator's scheduler does."""
    record = emu.job(job_id)
    record.instance = InstanceSummary(instance_id=str(uuid.uuid4()), region="test", active=True)
    record.active = record.verified = True
    record.status = "running"
    record.touch()


async def _next(snapshots: AsyncIterator[Any]) -> Any:
    return await anext(snapshots)


async def test_watch_yields_each_state_once(tmp_path: Path) -> None:
    """pending -> running -> finished, each once, even when the job changes within a state."""
    async with (
        Emulator(schedule_delay=3600, expose_status=True) as emu,
        session_for(emu) as session,
    ):
        emu.add_chute("ext", {"run": None})  # the test drives the job's states
        handle = await session.create_job("ext", "run")
        snapshots = handle.watch(poll=FAST_POLL)

        first = await _next(snapshots)
        assert first.state is JobState.PENDING

        _claim(emu, handle.id)
        second = await _next(snapshots)
        assert second.state is JobState.RUNNING

        worker = session.job_from_status_url(emu.job_status_url(handle.id))
        (tmp_path / "a.txt").write_text("a")
        targets = await worker.finish(result={"r": 1}, outputs={"a.txt": tmp_path / "a.txt"})
        await worker.upload_outputs(targets)
        third: asyncio.Task[Any] = asyncio.create_task(_next(snapshots))
        polls = emu.counts["get"]
        await _wait_for(lambda: emu.counts["get"] >= polls + 2)  # it saw the finish listing
        assert not third.done()  # still running: no second "running" snapshot
        await worker.complete()
        finished = await third
        assert finished.state is JobState.FINISHED and finished.result == {
            "r": 1,
            "chutes_jobs": {"status": "complete"},
        }
        with pytest.raises(StopAsyncIteration):
            await _next(snapshots)


async def test_watch_of_a_finished_job_yields_it_once(chutes_session: ChutesSession) -> None:
    handle = await chutes_session.create_job("demo", "echo", {"a": 1})
    await handle.wait(poll=FAST_POLL)
    seen = [job async for job in chutes_session.job(handle.id).watch(poll=FAST_POLL)]
    assert [j.state for j in seen] == [JobState.FINISHED]


async def test_watch_timeout(chutes_session: ChutesSession, gate: Gate) -> None:
    handle = await chutes_session.create_job("gated", "run")
    seen = []
    with pytest.raises(JobTimeoutError):
        async for job in handle.watch(timeout=0.1, poll=FAST_POLL):
            seen.append(job.state)
    assert seen and JobState.FINISHED not in seen
    assert len(seen) == len(set(seen))


# ----------------------------------------------------------------------------- delete


async def _finished_job(session: ChutesSession) -> JobHandle:
    handle = await session.create_job("demo", "echo", {"x": 1})
    await handle.wait(poll=FAST_POLL)
    return handle


async def test_delete_then_the_job_is_gone(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    handle = await _finished_job(chutes_session)
    await handle.delete()
    with pytest.raises(NotFoundError):
        await handle.refresh()
    assert handle.id not in chutes_emulator.store.jobs
    await handle.delete()  # again: 404 means already gone


async def test_delete_of_an_unknown_job_is_not_an_error(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    await chutes_session.job(str(uuid.uuid4())).delete()
    assert chutes_emulator.counts["delete"] == 1


async def test_delete_of_a_running_job_stops_it(
    chutes_emulator: Emulator, chutes_session: ChutesSession, gate: Gate
) -> None:
    handle = await chutes_session.create_job("gated", "run")
    await gate.started.wait()
    await handle.delete()
    await chutes_emulator.wait_idle()
    with pytest.raises(NotFoundError):
        await handle.refresh()


async def test_live_delete_bug_is_reported_as_a_failure() -> None:
    async with Emulator(live_quirks=True, schedule_delay=0.01) as emu, session_for(emu) as s:
        handle = await _finished_job(s)
        with pytest.raises(DeleteFailedError, match="still exists") as caught:
            await handle.delete()
        assert isinstance(caught.value, ServerError)
        assert caught.value.status == 500
        assert emu.counts["delete"] == 1  # a 5xx delete is not re-sent: a GET decided
        assert (await handle.refresh()).job_id == handle.id  # the row survived, as live


async def test_delete_answering_500_without_deleting(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    handle = await _finished_job(chutes_session)
    chutes_emulator.faults.add("delete", status=500)
    with pytest.raises(DeleteFailedError, match="still exists"):
        await handle.delete()
    assert handle.id in chutes_emulator.store.jobs
    await handle.delete()  # the fault is spent: this one deletes
    assert handle.id not in chutes_emulator.store.jobs


async def test_delete_whose_answer_was_lost_after_deleting(chutes_emulator: Emulator) -> None:
    """The job went, the answer did not come: the retry's 404 means deleted."""
    async with session_for(chutes_emulator) as session:
        handle = await _finished_job(session)
        chutes_emulator.faults.add("delete", drop_after_handling=True)
        await handle.delete()
        assert handle.id not in chutes_emulator.store.jobs
        assert chutes_emulator.counts["delete"] == 2
