"""A 2xx that is not a JSON object (empty, JSON cut short with a matching length, an HTML page)
is retried like a 5xx on every call but a create, whose unreadable 2xx is UNKNOWN, never re-sent.

All over the emulator: its ``clip_to`` fault sends the first N bytes of the real answer with a
Content-Length of N, so the client sees a whole answer whose JSON is broken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chutes_jobs import ChutesSession, PollPolicy, ProtocolError, RetryPolicy
from chutes_jobs.bulk import BulkOutcome
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.faults import Fault
from chutes_jobs.errors import UnknownCreateError

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)
FAST_POLL = PollPolicy(initial=0.01, maximum=0.02)

#: Each way a 2xx can fail to be a JSON object, as a fault of the emulator.
UNREADABLE: dict[str, dict[str, Any]] = {
    "empty body": {"clip_to": 0},
    "JSON cut short": {"clip_to": 57},
    "HTML page": {"status": 200, "html": True},
}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(expose_status=True, schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})  # jobs left to the test, acting as the worker
        yield emulator


@pytest.fixture
async def user(emu: Emulator) -> AsyncIterator[ChutesSession]:
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=FAST) as s:
        yield s


@pytest.fixture
async def worker(emu: Emulator) -> AsyncIterator[ChutesSession]:
    """A worker's session: no user credentials."""
    async with ChutesSession(base_url=emu.base_url, retry_policy=FAST) as session:
        yield session


async def fired(fault: Fault, waiter: asyncio.Task[Any]) -> None:
    """Until ``fault`` was applied, or ``waiter`` ended (then the test fails, not hangs)."""
    while not fault.exhausted and not waiter.done():
        await asyncio.sleep(0.005)


async def finish_as_worker(emu: Emulator, worker: ChutesSession, job_id: str) -> None:
    handle = worker.job_from_status_url(emu.job_status_url(job_id))
    await handle.finish(result={"ok": True})
    await handle.complete()


# ----------------------------------------------------------------------------- reads


@pytest.mark.parametrize("fault", list(UNREADABLE))
async def test_one_unreadable_poll_does_not_end_wait(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, fault: str
) -> None:
    handle = await user.create_job("ext", "run")
    bad = emu.faults.add("get", after=1, **UNREADABLE[fault])  # the second poll
    waiting = asyncio.create_task(handle.wait(poll=FAST_POLL))
    await fired(bad, waiting)
    await finish_as_worker(emu, worker, handle.id)
    final = await waiting
    assert final.is_finished and final.result.items() >= {"ok": True}.items()
    assert final.status == "complete"


async def test_watch_yields_every_state_across_unreadable_polls(
    emu: Emulator, user: ChutesSession, worker: ChutesSession
) -> None:
    handle = await user.create_job("ext", "run")
    faults = [emu.faults.add("get", after=1, **kind) for kind in UNREADABLE.values()]
    states = []

    async def watch() -> None:
        async for job in handle.watch(poll=FAST_POLL):
            states.append(job.state.value)

    watching = asyncio.create_task(watch())
    for fault in faults:
        await fired(fault, watching)
    await finish_as_worker(emu, worker, handle.id)
    await watching
    assert states[0] == "pending" and states[-1] == "finished"
    assert len(states) == len(set(states))  # each state once, none lost to a bad answer


@pytest.mark.parametrize("fault", list(UNREADABLE))
async def test_protocol_error_only_once_the_policy_is_spent(
    emu: Emulator, user: ChutesSession, fault: str
) -> None:
    handle = await user.create_job("ext", "run")
    emu.faults.add("get", times=None, **UNREADABLE[fault])
    with pytest.raises(ProtocolError, match="expected a JSON object") as info:
        await handle.refresh()
    assert info.value.attempts == FAST.max_attempts == emu.counts["get"]
    assert info.value.status == 200


async def test_an_unreadable_delete_answer_is_sent_again_and_finds_the_job_gone(
    emu: Emulator, user: ChutesSession
) -> None:
    handle = await user.create_job("ext", "run")
    emu.faults.add("delete", clip_to=0)  # the delete happened; its answer is unreadable
    await handle.delete()
    assert emu.counts["delete"] == 2  # the second answered 404: gone, as wanted
    assert handle.id not in emu.store.jobs


# ----------------------------------------------------------------------------- creates


@pytest.mark.parametrize("fault", list(UNREADABLE))
async def test_an_unreadable_create_answer_is_never_sent_again(
    emu: Emulator, user: ChutesSession, fault: str
) -> None:
    emu.faults.add("create", times=None, **UNREADABLE[fault])
    with pytest.raises(ProtocolError) as info:
        await user.create_job("ext", "run")
    assert info.value.attempts == 1 == emu.counts["create"]
    # clip_to ran the route: that job exists and is billed, though its id never arrived
    assert len(emu.store.jobs) == (0 if "html" in UNREADABLE[fault] else 1)


async def test_submit_many_reports_an_unreadable_create_unknown(
    emu: Emulator, user: ChutesSession, tmp_path: Path
) -> None:
    emu.faults.add("create", clip_to=10)
    ledger = tmp_path / "ledger.db"
    results = [r async for r in user.submit_many("ext", "run", [{"i": 0}], ledger=ledger)]
    assert [r.outcome for r in results] == [BulkOutcome.UNKNOWN]
    assert isinstance(results[0].error, UnknownCreateError)
    assert emu.counts["create"] == 1 == len(emu.store.jobs)
    again = [r async for r in user.submit_many("ext", "run", [{"i": 0}], ledger=ledger)]
    assert [r.outcome for r in again] == [BulkOutcome.UNKNOWN]  # the ledger never re-sends it
    assert emu.counts["create"] == 1


# ----------------------------------------------------------------------------- bulk polls


@pytest.mark.parametrize("own_session", [False, True], ids=["http1-pool", "aiohttp"])
async def test_submit_many_wait_survives_unreadable_polls(
    emu: Emulator, own_session: bool, http1_sends: list[str]
) -> None:
    """A run's polls go over the HTTP/1.1 pool, or over aiohttp with the caller's session."""
    assert emu.demo_chute_id is not None
    for kind in UNREADABLE.values():
        emu.faults.add("get", **kind)
    inputs = [{"seconds": 0.05 * i} for i in range(4)]
    async with (
        aiohttp.ClientSession() as http,
        ChutesSession(
            base_url=emu.base_url,
            api_key=emu.api_key,
            retry_policy=FAST,
            session=http if own_session else None,
        ) as s,
    ):
        run = s.submit_many(emu.demo_chute_id, "sleep", inputs, wait=True, poll=FAST_POLL)
        results = [r async for r in run]
    assert [r.outcome for r in results] == [BulkOutcome.FINISHED] * 4, [r.error for r in results]
    assert emu.faults.pending("get") == []  # every bad answer was met, and retried
    assert ("GET" in http1_sends) is not own_session
