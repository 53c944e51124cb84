"""Both lanes read answers under one size limit, and an answer over it is not asked for again.

A job's ``result`` comes back with every GET of the job (its ``job_args`` too), so a large one
must be readable whichever lane carries the poll: ``JobHandle.wait`` (aiohttp), a bulk run's
polls (the HTTP/1.1 pool) and a ledger re-run resuming them. All of it over the emulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest

import chutes_jobs as cj
from chutes_jobs import BulkOutcome, CallKind, PollPolicy, TransportError
from chutes_jobs._http import aiohttp_lane, bulk_traffic, http1
from chutes_jobs.emulator import Emulator
from chutes_jobs.errors import AnswerTooLargeError

BLOB = "r" * (9 * 1024 * 1024)  # a 9 MiB string: over the HTTP/1.1 pool's former 8 MiB cap
FAST_POLL = PollPolicy(initial=0.02, maximum=0.05)


@asynccontextmanager
async def emulator_and_session() -> AsyncIterator[tuple[Emulator, cj.ChutesSession]]:
    async with (
        Emulator(host="127.0.0.1", port=0, schedule_delay=0.01) as emu,
        cj.ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as session,
    ):
        yield emu, session


def chute(emu: Emulator) -> str:
    assert emu.demo_chute_id is not None
    return emu.demo_chute_id


async def bulk(session: cj.ChutesSession, emu: Emulator, **options: Any) -> list[cj.BulkResult]:
    inputs = [{"blob": BLOB}]
    return [r async for r in session.submit_many(chute(emu), "echo", inputs, **options)]


async def test_a_9_mib_result_is_read_by_wait() -> None:
    async with emulator_and_session() as (emu, session):
        handle = await session.create_job(chute(emu), "echo", {"blob": BLOB})
        job = await handle.wait(poll=FAST_POLL, timeout=60)
    assert job.result["blob"] == BLOB


async def test_a_9_mib_result_is_read_by_submit_many_wait(http1_sends: list[str]) -> None:
    async with emulator_and_session() as (emu, session):
        [result] = await bulk(session, emu, wait=True, poll=FAST_POLL, wait_timeout=60)
    assert result.outcome is BulkOutcome.FINISHED, result.error
    assert result.job is not None and result.job.result["blob"] == BLOB
    assert "GET" in http1_sends  # the polls went over the HTTP/1.1 pool


async def test_a_9_mib_result_is_read_by_a_ledger_rerun(tmp_path: Path) -> None:
    ledger = tmp_path / "run.db"
    async with emulator_and_session() as (emu, session):
        [first] = await bulk(session, emu, ledger=ledger)
        [again] = await bulk(session, emu, ledger=ledger, wait=True, poll=FAST_POLL)
        creates = emu.counts["create"]
    assert first.outcome is BulkOutcome.SUBMITTED
    assert again.resumed and again.outcome is BulkOutcome.FINISHED, again.error
    assert again.job is not None and again.job.result["blob"] == BLOB
    assert creates == 1


@pytest.mark.parametrize("lane", ["aiohttp", "http1"])
async def test_an_answer_over_the_limit_is_refused_once_not_retried(
    monkeypatch: pytest.MonkeyPatch, lane: str
) -> None:
    """The same error from either lane, after one attempt: the answer would be as large again."""
    async with emulator_and_session() as (emu, session):
        handle = await session.create_job(chute(emu), "echo", {"blob": "x" * 2000})
        monkeypatch.setattr(aiohttp_lane, "MAX_ANSWER_BYTES", 1000)
        monkeypatch.setattr(http1, "MAX_ANSWER_BYTES", 1000)
        lane_of_the_call = bulk_traffic() if lane == "http1" else nullcontext()
        with lane_of_the_call, pytest.raises(AnswerTooLargeError, match="than 1000 bytes") as info:
            await session.request("GET", handle.path, kind=CallKind.READ)
        gets = emu.counts["get"]
    assert isinstance(info.value, TransportError) and not info.value.connect_failed
    assert info.value.attempts == 1 and gets == 1


async def test_a_create_whose_answer_is_over_the_limit_is_unknown_not_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job was created (the server answered 200): it is reported UNKNOWN, never re-sent."""
    monkeypatch.setattr(http1, "MAX_ANSWER_BYTES", 1000)
    async with emulator_and_session() as (emu, session):
        results = [r async for r in session.submit_many(chute(emu), "echo", [{"blob": "x" * 2000}])]
        creates = emu.counts["create"]
    assert [r.outcome for r in results] == [BulkOutcome.UNKNOWN]
    assert isinstance(results[0].error, cj.ChutesError)
    assert isinstance(results[0].error.__cause__, AnswerTooLargeError)
    assert creates == 1
