"""``submit_many(ledger="postgresql://...")`` end to end on the emulator: runs that share a batch,
take over what a dead process left, share the 429 pause and the quota stop."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

import chutes_jobs as cj
from chutes_jobs.bulk import BulkOutcome, BulkResult, QuotaExceededError, UnknownCreateError
from chutes_jobs.bulk.ledger import Ledger, LedgerError, LedgerState
from chutes_jobs.emulator import Emulator
from chutes_jobs.polling import PollPolicy

S = LedgerState
FAST_POLL = PollPolicy(initial=0.05, maximum=0.2)


@asynccontextmanager
async def emulator(**settings: Any) -> AsyncIterator[tuple[Emulator, cj.ChutesSession]]:
    async with (
        Emulator(port=0, schedule_delay=0.01, **settings) as emu,
        cj.ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as session,
    ):
        yield emu, session


async def run(
    session: cj.ChutesSession, emu: Emulator, url: str, inputs: Any, method: str = "echo",
    **options: Any,
) -> list[BulkResult]:  # fmt: skip
    assert emu.demo_chute_id is not None
    options.setdefault("concurrency", 4)
    results = session.submit_many(emu.demo_chute_id, method, inputs, ledger=url, **options)
    return [r async for r in results]


async def states(url: str) -> dict[LedgerState, int]:
    async with await Ledger.open(url) as ledger:
        return {state: n for state, n in (await ledger.counts()).items() if n}


def created_inputs(emu: Emulator) -> Counter[int]:
    return Counter(job.job_args["i"] for job in emu.store.jobs.values())


def sql(url: str, query: str, *params: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query, params)  # type: ignore[arg-type]


INPUTS = [{"i": i} for i in range(120)]


async def test_two_runs_share_a_batch_and_create_each_input_once(postgres_url: str) -> None:
    async with emulator() as (emu, session):
        first, second = await asyncio.gather(
            run(session, emu, postgres_url, INPUTS, wait=True, poll=FAST_POLL),
            run(session, emu, postgres_url, INPUTS, wait=True, poll=FAST_POLL),
        )
        again = await run(session, emu, postgres_url, INPUTS, wait=True, poll=FAST_POLL)

    assert first and second  # both did part of it
    assert sorted(r.index for r in first + second) == list(range(120))
    assert {r.outcome for r in first + second} == {BulkOutcome.FINISHED}
    assert all(r.ok and r.job is not None and r.job.result is not None for r in first + second)
    assert created_inputs(emu) == Counter(range(120))
    assert again == []  # nothing left: a re-run creates nothing and reports nothing
    assert await states(postgres_url) == {S.FINISHED: 120}


async def test_downloads_land_on_the_machine_that_follows_the_job(
    postgres_url: str, tmp_path: Path
) -> None:
    inputs = [{"count": 1, "size": 1000 + i, "seed": i} for i in range(8)]
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    async with emulator() as (emu, session):
        a, b = await asyncio.gather(
            run(session, emu, postgres_url, inputs, "files", download_to=out_a, poll=FAST_POLL),
            run(session, emu, postgres_url, inputs, "files", download_to=out_b, poll=FAST_POLL),
        )
    assert sorted(r.index for r in a + b) == list(range(8))
    for results, folder in ((a, out_a), (b, out_b)):
        for result in results:
            assert result.outcome is BulkOutcome.DOWNLOADED and result.paths
            assert all(p.parent == folder / str(result.job_id) for p in result.paths.values())
    assert await states(postgres_url) == {S.DOWNLOADED: 8}


async def test_a_dead_process_leaves_each_step_to_the_others(postgres_url: str) -> None:
    """Rows a dead process held, its lease expired: claimed todo → created; creating (the POST
    may be out) → unknown, not re-sent; submitted → followed by this run."""
    async with emulator() as (emu, session):
        assert emu.demo_chute_id is not None
        first = await run(session, emu, postgres_url, INPUTS[:3], wait=False)
        job_ids = {r.index: r.job_id for r in first}
        sql(
            postgres_url,
            "UPDATE chutes_jobs_ledger SET state = 'todo', job_id = NULL, "
            "owner = 'dead:1:0', lease_until = now() - interval '1 second' WHERE input_index = 0",
        )
        sql(postgres_url, "UPDATE chutes_jobs_ledger SET state = 'creating', job_id = NULL, "
            "owner = 'dead:1:0', lease_until = now() + interval '0.5 second' "
            "WHERE input_index = 1")  # fmt: skip
        sql(postgres_url, "UPDATE chutes_jobs_ledger SET owner = 'dead:1:0', "
            "lease_until = now() - interval '1 second' WHERE input_index = 2")  # fmt: skip
        creates = emu.counts["create"]
        results = await run(session, emu, postgres_url, INPUTS[:3], wait=True, poll=FAST_POLL)

    by_index = {r.index: r for r in results}
    assert by_index[0].outcome is BulkOutcome.FINISHED and not by_index[0].resumed
    assert by_index[1].outcome is BulkOutcome.UNKNOWN and by_index[1].resumed
    assert isinstance(by_index[1].error, UnknownCreateError)
    assert by_index[2].outcome is BulkOutcome.FINISHED and by_index[2].resumed
    assert by_index[2].job_id == job_ids[2]
    assert emu.counts["create"] == creates + 1  # input 0 only
    assert await states(postgres_url) == {S.FINISHED: 2, S.UNKNOWN: 1}


async def test_resubmit_unknown_creates_unknown_rows_of_earlier_runs(postgres_url: str) -> None:
    async with emulator() as (emu, session):
        await run(session, emu, postgres_url, INPUTS[:2])
        sql(postgres_url, "UPDATE chutes_jobs_ledger SET state = 'unknown', job_id = NULL "
            "WHERE input_index = 1")  # fmt: skip
        plain = await run(session, emu, postgres_url, INPUTS[:2])
        forced = await run(session, emu, postgres_url, INPUTS[:2], resubmit_unknown=True)
    assert plain == []  # unknown rows are left alone (the book shows them)
    assert [(r.index, r.outcome, r.resumed) for r in forced] == [(1, BulkOutcome.SUBMITTED, False)]
    assert await states(postgres_url) == {S.SUBMITTED: 2}


async def test_a_429_pause_reaches_the_other_process(postgres_url: str) -> None:
    async with emulator() as (emu, session):
        emu.faults.add("create", status=429, retry_after=1)
        results = await run(session, emu, postgres_url, INPUTS[:4], concurrency=1)
        assert {r.outcome for r in results} == {BulkOutcome.SUBMITTED}
        with psycopg.connect(postgres_url) as conn:
            cursor = conn.execute("SELECT updated_by, resume_at > 'epoch' FROM chutes_jobs_pause")
            published = cursor.fetchone()
        assert published is not None and published[0] is not None and published[1]

        # another process's pause in force: this run sends nothing until it ends
        sql(postgres_url, "UPDATE chutes_jobs_pause SET resume_at = now() + interval '1 hour'")
        creates = emu.counts["create"]
        paused = asyncio.create_task(run(session, emu, postgres_url, INPUTS[4:8]))
        await asyncio.sleep(1.5)
        assert emu.counts["create"] == creates
        paused.cancel()
        with pytest.raises(asyncio.CancelledError):
            await paused


async def test_a_quota_429_is_published(postgres_url: str) -> None:
    async with emulator(daily_quota=3) as (emu, session):
        first = await run(session, emu, postgres_url, INPUTS[:6], concurrency=1)
        async with await Ledger.open(postgres_url) as book:
            summary = await book.summary()
    assert Counter(r.outcome for r in first) == {BulkOutcome.SUBMITTED: 3,
                                                 BulkOutcome.NOT_SUBMITTED: 3}  # fmt: skip
    assert summary.pause is not None and summary.pause.quota is not None
    assert "quota" in summary.pause.quota.lower()


async def test_a_quota_met_by_another_process_stops_this_one(postgres_url: str) -> None:
    async with emulator() as (emu, session):  # no quota here: only the shared row stops it
        emu.faults.add("create", latency=0.1, times=None)
        running = asyncio.create_task(run(session, emu, postgres_url, INPUTS[:40],
                                          concurrency=1))  # fmt: skip
        while emu.counts["create"] < 2 and not running.done():
            await asyncio.sleep(0.02)
        sql(postgres_url, "UPDATE chutes_jobs_pause SET quota = '429 Daily job quota exceeded',"
            " quota_at = now()")  # another process met the quota  # fmt: skip
        results = await asyncio.wait_for(running, 60)
    refused = [r for r in results if r.outcome is BulkOutcome.NOT_SUBMITTED]
    assert refused and all(isinstance(r.error, QuotaExceededError) for r in refused)
    assert "Daily job quota exceeded" in str(refused[0].error)
    assert len(emu.store.jobs) == emu.counts["create"] < 40


async def test_another_batch_in_the_same_ledger_is_refused(postgres_url: str) -> None:
    async with emulator() as (emu, session):
        await run(session, emu, postgres_url, INPUTS[:1])
        before = asyncio.all_tasks()
        with pytest.raises(LedgerError, match="holds the batch of chute"):
            await run(session, emu, postgres_url, INPUTS[:1], method="sleep")
        run_tasks = [t for t in asyncio.all_tasks() - before if "Run." in t.get_coro().__qualname__]
        assert run_tasks == []  # the refused run's submitters are not left waiting for work


async def test_leaving_early_hands_the_claimed_inputs_over(postgres_url: str) -> None:
    async with emulator() as (emu, session):
        assert emu.demo_chute_id is not None
        results = session.submit_many(emu.demo_chute_id, "echo", INPUTS, ledger=postgres_url,
                                      concurrency=2)  # fmt: skip
        async with aclosing(results):
            async for _ in results:
                break
        async with await Ledger.open(postgres_url) as book:
            summary = await book.summary()
        created_before = len(emu.store.jobs)  # the creates under way finished and were recorded
        rest = await run(session, emu, postgres_url, INPUTS)
    assert summary.held == {}  # nothing stays claimed by the stopped run
    assert summary.counts[S.SUBMITTED] == created_before < 120
    assert len(rest) == 120 - created_before
    assert {(r.outcome, r.resumed) for r in rest} == {(BulkOutcome.SUBMITTED, False)}
    assert created_inputs(emu) == Counter(range(120))


async def test_bad_inputs_are_reported_and_the_rest_loaded(postgres_url: str) -> None:
    inputs: list[Any] = [{"i": 0}, "not a mapping", {"i": object()}, {"i": 3}]
    async with emulator() as (emu, session):
        results = await run(session, emu, postgres_url, inputs)
    outcome = {r.index: r.outcome for r in results}
    assert outcome == {0: BulkOutcome.SUBMITTED, 1: BulkOutcome.NOT_SUBMITTED,
                       2: BulkOutcome.NOT_SUBMITTED, 3: BulkOutcome.SUBMITTED}  # fmt: skip
    assert [json.dumps(j.job_args["i"]) for j in emu.store.jobs.values()].count("0") == 1
