"""``submit_many`` end to end on the emulator over loopback HTTP: scale, rate limits, quota,
cancellation and resume through the ledger, per-item errors, unknown creates, downloads."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import chutes_jobs as cj
from chutes_jobs import bulk
from chutes_jobs.bulk import BulkOutcome, BulkResult, QuotaExceededError, UnknownCreateError
from chutes_jobs.bulk.ledger import Ledger, LedgerError, LedgerState
from chutes_jobs.emulator import Emulator
from chutes_jobs.models import JobState
from chutes_jobs.polling import PollPolicy
from chutes_jobs.transfer import TransferProgress

FAST_POLL = PollPolicy(initial=0.05, maximum=0.2)


@asynccontextmanager
async def emulator(**settings: Any) -> AsyncIterator[Emulator]:
    settings.setdefault("schedule_delay", 0.01)
    async with Emulator(host="127.0.0.1", port=0, **settings) as emu:
        yield emu


@asynccontextmanager
async def session_for(
    emu: Emulator, http: aiohttp.ClientSession | None = None
) -> AsyncIterator[cj.ChutesSession]:
    async with cj.ChutesSession(base_url=emu.base_url, api_key=emu.api_key, session=http) as s:
        yield s


async def run_all(
    session: cj.ChutesSession, emu: Emulator, method: str, inputs: Any, **options: Any
) -> list[BulkResult]:
    assert emu.demo_chute_id is not None
    return [r async for r in session.submit_many(emu.demo_chute_id, method, inputs, **options)]


def by_outcome(results: list[BulkResult]) -> dict[BulkOutcome, list[BulkResult]]:
    grouped: dict[BulkOutcome, list[BulkResult]] = {}
    for result in results:
        grouped.setdefault(result.outcome, []).append(result)
    return grouped


async def ledger_states(path: Path) -> dict[LedgerState, int]:
    async with await Ledger.open(path) as ledger:
        return {state: n for state, n in (await ledger.counts()).items() if n}


# ----------------------------------------------------------------------------- scale


async def test_2000_jobs_at_concurrency_64_are_all_accounted_for() -> None:
    async with emulator() as emu, session_for(emu) as session:
        inputs = ({"i": i} for i in range(2000))
        results = await run_all(session, emu, "echo", inputs, concurrency=64)
        await emu.wait_idle()

    assert all(r.ok and r.outcome is BulkOutcome.SUBMITTED for r in results)
    assert sorted(r.index for r in results) == list(range(2000))
    assert len({r.job_id for r in results}) == 2000
    assert emu.counts["create"] == 2000 == len(emu.store.jobs)
    # each result's job carries its own input
    assert all(r.job is not None and r.job.job_args["i"] == r.index for r in results)


async def test_inputs_are_read_lazily_while_the_consumer_is_paused() -> None:
    taken = 0

    async def endless() -> AsyncIterator[dict[str, int]]:
        nonlocal taken
        for i in itertools.count():
            taken += 1
            yield {"i": i}

    async with emulator() as emu, session_for(emu) as session:
        assert emu.demo_chute_id is not None
        stream = session.submit_many(
            emu.demo_chute_id, "echo", endless(), concurrency=4, max_in_flight=8
        )
        async with aclosing(stream):
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == 1:
                    await asyncio.sleep(0.3)  # a slow consumer: reading must wait for it
                    assert taken <= seen + 8
                if seen == 20:
                    break
        # closed: nothing more is read or created
        created = emu.counts["create"]
        assert taken <= 20 + 8
        await asyncio.sleep(0.1)
        assert emu.counts["create"] == created <= taken


async def test_an_input_iterable_that_fails_reports_what_it_gave_then_raises() -> None:
    def broken() -> Iterator[dict[str, int]]:
        yield {"i": 0}
        yield {"i": 1}
        raise RuntimeError("input source broke")

    async with emulator() as emu, session_for(emu) as session:
        results: list[BulkResult] = []
        with pytest.raises(RuntimeError, match="input source broke"):
            async for result in session.submit_many(emu.demo_chute_id or "", "echo", broken()):
                results.append(result)
    assert sorted(r.index for r in results) == [0, 1]
    assert all(r.outcome is BulkOutcome.SUBMITTED for r in results)


# ----------------------------------------------------------------------------- rate limits


class PauseRecorder:
    """Every pause of the shared rate gate, and every create the client started."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pauses: list[tuple[float, float]] = []
        self.starts: list[float] = []
        original = bulk.RateGate.pause

        def pause(gate: bulk.RateGate, seconds: float) -> None:
            start = asyncio.get_running_loop().time()  # read first: the window only grows
            original(gate, seconds)
            self.pauses.append((start, gate.resume_at))

        monkeypatch.setattr(bulk.RateGate, "pause", pause)

    def trace_config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
            if params.method == "POST":
                self.starts.append(asyncio.get_running_loop().time())

        trace.on_request_start.append(on_start)
        return trace


def record_arrivals(emu: Emulator) -> list[float]:
    """Loop times at which create requests reached the emulator (same loop as the client)."""
    arrivals: list[float] = []
    take = emu.faults.take

    def recording_take(route: str) -> Any:
        if route == "create":
            arrivals.append(asyncio.get_running_loop().time())
        return take(route)

    emu.faults.take = recording_take  # type: ignore[method-assign]
    return arrivals


async def test_a_429_with_retry_after_pauses_every_submitter_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = PauseRecorder(monkeypatch)
    concurrency = 16
    async with emulator() as emu:
        arrivals = record_arrivals(emu)
        # 0.6 s: above the policy's initial_backoff, the shortest wait a Retry-After gets
        emu.faults.add("create", status=429, retry_after=0.6, times=4, after=40)
        emu.faults.add("create", status=429, times=3, after=150)  # no Retry-After: backoff
        async with (
            aiohttp.ClientSession(trace_configs=[recorder.trace_config()]) as http,
            session_for(emu, http) as session,
        ):
            results = await run_all(
                session, emu, "echo", ({"i": i} for i in range(300)), concurrency=concurrency
            )
        await emu.wait_idle()

    assert all(r.ok and r.outcome is BulkOutcome.SUBMITTED for r in results), [
        r.error for r in results if not r.ok
    ]
    assert sorted(r.index for r in results) == list(range(300))
    assert len({r.job_id for r in results}) == 300 == len(emu.store.jobs)
    assert emu.counts["create"] == 300 + 4 + 3  # every accepted create is one job, no more
    assert len(recorder.pauses) == 7
    first_start, first_end = recorder.pauses[0]
    assert first_end - first_start == pytest.approx(0.6, abs=0.01)  # Retry-After honoured
    for start, end in recorder.pauses:
        # No submitter started a create while the group was paused...
        assert not [t for t in recorder.starts if start <= t < end]
        # ...so what reached the server meanwhile was already under way (one per submitter).
        assert len([t for t in arrivals if start < t < end]) < concurrency


async def test_429_bursts_over_the_http1_pool_lose_and_duplicate_nothing() -> None:
    """The same bursts with the session's own pool, so creates go over the HTTP/1.1 pool."""
    async with emulator() as emu, session_for(emu) as session:
        emu.faults.add("create", status=429, retry_after=0.2, times=4, after=40)
        emu.faults.add("create", status=429, times=3, after=150)
        results = await run_all(session, emu, "echo", ({"i": i} for i in range(300)))
        await emu.wait_idle()

    assert all(r.ok and r.outcome is BulkOutcome.SUBMITTED for r in results)
    assert sorted(r.index for r in results) == list(range(300))
    assert len({r.job_id for r in results}) == 300 == len(emu.store.jobs)
    assert emu.counts["create"] == 300 + 4 + 3


async def test_daily_quota_stops_the_batch_without_spinning(tmp_path: Path) -> None:
    quota, concurrency = 30, 8
    ledger = tmp_path / "run.db"
    async with emulator(daily_quota=quota) as emu, session_for(emu) as session:
        inputs = ({"i": i} for i in range(100))
        results = await run_all(
            session, emu, "echo", inputs, concurrency=concurrency, ledger=ledger
        )
        await emu.wait_idle()

    grouped = by_outcome(results)
    assert len(emu.store.jobs) == quota == len(grouped[BulkOutcome.SUBMITTED])
    refused = grouped[BulkOutcome.NOT_SUBMITTED]
    assert len(refused) == 100 - quota
    assert all(isinstance(r.error, QuotaExceededError) for r in refused)
    assert "quota" in str(refused[0].error).lower()
    assert emu.counts["create"] <= quota + concurrency
    states = await ledger_states(ledger)
    assert states[LedgerState.SUBMITTED] == quota
    assert states.get(LedgerState.CREATING, 0) == 0


# ----------------------------------------------------------------------------- per-item errors


async def test_one_bad_input_never_stops_the_others() -> None:
    inputs: list[Any] = [{"i": i} for i in range(10)]
    inputs[3] = {"i": 3, "_disk_gb": 5}  # refused before anything is sent
    inputs[7] = {"i": 7, "_disk_gb": True}
    inputs[8] = ["not", "a", "mapping"]
    async with emulator() as emu, session_for(emu) as session:
        results = await run_all(session, emu, "echo", inputs, concurrency=4)

    failed = {r.index: r for r in results if not r.ok}
    assert sorted(failed) == [3, 7, 8]
    assert all(r.outcome is BulkOutcome.NOT_SUBMITTED for r in failed.values())
    assert all(isinstance(r.error, cj.ConfigurationError) for r in failed.values())
    assert "disk" in str(failed[3].error)
    ok = [r for r in results if r.ok]
    assert sorted(r.index for r in ok) == [0, 1, 2, 4, 5, 6, 9]
    assert emu.counts["create"] == 7


async def test_waiting_reports_finished_and_failed_jobs() -> None:
    async with emulator(expose_status=True) as emu, session_for(emu) as session:
        assert emu.demo_chute_id is not None
        echo = [
            r
            async for r in session.submit_many(
                emu.demo_chute_id, "echo", [{"i": 0}, {"i": 1}], wait=True, poll=FAST_POLL
            )
        ]
        failing = [
            r
            async for r in session.submit_many(
                emu.demo_chute_id, "fail", [{"message": "boom"}], wait=True, poll=FAST_POLL
            )
        ]
    assert {r.outcome for r in echo} == {BulkOutcome.FINISHED}
    assert all(
        r.job is not None and r.job.result == {"i": r.index, "chutes_jobs": {"status": "complete"}}
        for r in echo
    )
    [failed] = failing
    assert failed.outcome is BulkOutcome.FAILED
    assert isinstance(failed.error, cj.JobFailedError)
    assert "boom" in str(failed.error)


async def test_a_finish_the_ledger_cannot_record_is_one_error_line_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A shared ledger's database going away mid-run once printed a traceback per job.
    from chutes_jobs.bulk.ledger.sqlite import SqliteLedger

    async def unrecordable(self: SqliteLedger, key: str, **values: Any) -> None:
        raise LedgerError(f"ledger {self.location}: write failed: the server went away")

    monkeypatch.setattr(SqliteLedger, "mark_finished", unrecordable)
    async with emulator(expose_status=True) as emu, session_for(emu) as session:
        results = await run_all(session, emu, "echo", [{"i": 0}, {"i": 1}], wait=True,
                                poll=FAST_POLL, ledger=tmp_path / "run.db")  # fmt: skip
    assert {(r.outcome, type(r.error)) for r in results} == {(BulkOutcome.SUBMITTED, LedgerError)}
    following = [r for r in caplog.records if r.getMessage().startswith("following job")]
    assert len(following) == 2
    assert all(r.exc_info is None and "the server went away" in r.getMessage() for r in following)


async def test_creates_and_polls_go_over_the_http1_pool(http1_sends: list[str]) -> None:
    """On the session's own connections, every create and every poll the emulator saw came
    over the HTTP/1.1 pool."""
    async with emulator() as emu, session_for(emu) as session:
        inputs = [{"i": i} for i in range(5)]
        results = await run_all(session, emu, "echo", inputs, wait=True, poll=FAST_POLL)
        gets = emu.counts["get"]
    assert {r.outcome for r in results} == {BulkOutcome.FINISHED}
    assert http1_sends.count("POST") == 5 == emu.counts["create"]
    assert http1_sends.count("GET") == gets >= 5


async def test_on_job_sees_each_create_answer_and_each_poll() -> None:
    seen: dict[str, list[JobState]] = {}
    async with emulator() as emu, session_for(emu) as session:
        results = await run_all(
            session, emu, "sleep", [{"seconds": 0.2}, {"seconds": 0.2}], wait=True,
            poll=FAST_POLL, on_job=lambda job: seen.setdefault(job.job_id, []).append(job.state),
        )  # fmt: skip
    assert sorted(seen) == sorted(r.job_id for r in results if r.job_id)
    for states in seen.values():
        assert states[0] is JobState.PENDING  # the create's answer
        assert JobState.RUNNING in states and states[-1] is JobState.FINISHED  # the polls


# ----------------------------------------------------------------------------- ledger


async def test_cancel_mid_run_then_rerun_creates_nothing_twice(tmp_path: Path) -> None:
    ledger = tmp_path / "run.db"
    inputs = [{"seconds": 0.01 + i / 10000} for i in range(40)]  # distinct keys
    async with emulator() as emu, session_for(emu) as session:
        emu.faults.add("create", latency=0.02, times=None)  # creates are under way at cancel
        first: list[BulkResult] = []
        started = asyncio.Event()

        async def consume() -> None:
            async for result in session.submit_many(
                emu.demo_chute_id or "", "sleep", inputs, concurrency=8, wait=True,
                poll=FAST_POLL, ledger=ledger,
            ):  # fmt: skip
                first.append(result)
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        created_before = emu.counts["create"]
        assert 0 < created_before < len(inputs)

        states = await ledger_states(ledger)
        assert LedgerState.CREATING not in states  # every create under way was recorded
        assert LedgerState.UNKNOWN not in states
        assert states.get(LedgerState.SUBMITTED, 0) + states.get(LedgerState.FINISHED, 0) == (
            created_before
        )

        emu.faults.clear()
        second = await run_all(
            session, emu, "sleep", inputs, concurrency=8, wait=True, poll=FAST_POLL,
            ledger=ledger,
        )  # fmt: skip
        await emu.wait_idle()

    assert emu.counts["create"] == len(inputs) == len(emu.store.jobs)  # zero duplicates
    assert all(r.outcome is BulkOutcome.FINISHED and r.ok for r in second)
    assert sorted(r.index for r in second) == list(range(len(inputs)))
    assert len({r.job_id for r in second}) == len(inputs)
    assert sum(r.resumed for r in second) == created_before
    assert await ledger_states(ledger) == {LedgerState.FINISHED: len(inputs)}


async def test_breaking_out_of_the_loop_stops_cleanly(tmp_path: Path) -> None:
    ledger = tmp_path / "run.db"
    async with emulator() as emu, session_for(emu) as session:
        emu.faults.add("create", latency=0.02, times=None)
        assert emu.demo_chute_id is not None
        stream = session.submit_many(
            emu.demo_chute_id, "echo", ({"i": i} for i in range(500)), concurrency=8,
            ledger=ledger,
        )  # fmt: skip
        async with aclosing(stream):
            async for result in stream:
                assert result.ok
                break
        created = emu.counts["create"]
        states = await ledger_states(ledger)  # opens: the run closed its ledger
    assert created < 500
    assert states == {LedgerState.SUBMITTED: created}


async def test_an_unanswered_create_is_unknown_and_resubmitted_only_on_request(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "run.db"
    inputs = [{"i": i} for i in range(6)]
    async with emulator() as emu, session_for(emu) as session:
        emu.faults.add("create", drop_after_handling=True, after=2)  # input 2: billed, no answer
        first = await run_all(session, emu, "echo", inputs, concurrency=1, ledger=ledger)
        assert emu.counts["create"] == 6 == len(emu.store.jobs)
        [unknown] = [r for r in first if r.outcome is BulkOutcome.UNKNOWN]
        assert unknown.index == 2 and unknown.handle is None
        assert isinstance(unknown.error, UnknownCreateError)
        async with await Ledger.open(ledger) as opened:
            entry = await opened.get(unknown.key)
        assert entry is not None and entry.state is LedgerState.UNKNOWN

        again = await run_all(session, emu, "echo", inputs, concurrency=1, ledger=ledger)
        assert emu.counts["create"] == 6  # nothing re-sent
        assert all(r.resumed for r in again)
        assert [r.index for r in again if r.outcome is BulkOutcome.UNKNOWN] == [2]

        forced = await run_all(
            session, emu, "echo", inputs, concurrency=1, ledger=ledger, resubmit_unknown=True
        )
        await emu.wait_idle()
    assert emu.counts["create"] == 7  # only the unknown one, once
    [redone] = [r for r in forced if r.index == 2]
    assert redone.outcome is BulkOutcome.SUBMITTED and redone.ok and not redone.resumed
    assert await ledger_states(ledger) == {LedgerState.SUBMITTED: 6}


@pytest.mark.parametrize(
    ("fault", "billed"),
    [
        ({"drop_after_handling": True}, True),  # created, the answer never sent
        ({"short_body": 10}, True),  # created, the answer cut short
        ({"cut_after": 3}, False),  # the request cut while being read
        ({"hang": True}, False),  # no answer before the read timeout
        ({"status": 500}, False),  # a bare 500: the server may have acted
        ({"status": 502, "html": True}, False),  # a proxy's error page
    ],
    ids=["dropped", "short-answer", "cut-request", "hang", "500", "502-html"],
)
async def test_a_create_that_may_have_reached_the_server_is_unknown_never_resent(
    tmp_path: Path, fault: dict[str, Any], billed: bool
) -> None:
    """Every way the HTTP/1.1 pool can lose a create's answer: the input is ``unknown`` in
    the results and the ledger, the create is sent once, the others go on."""
    ledger = tmp_path / "run.db"
    async with emulator() as emu:
        emu.faults.add("create", after=2, **fault)
        async with cj.ChutesSession(
            base_url=emu.base_url, api_key=emu.api_key, read_timeout=0.3
        ) as session:
            results = await run_all(
                session, emu, "echo", [{"i": i} for i in range(5)], concurrency=1, ledger=ledger
            )
        await emu.wait_idle()

    assert emu.counts["create"] == 5  # nothing re-sent
    assert len(emu.store.jobs) == 4 + billed
    [unknown] = [r for r in results if not r.ok]
    assert unknown.index == 2 and unknown.outcome is BulkOutcome.UNKNOWN
    assert isinstance(unknown.error, UnknownCreateError)
    assert {r.outcome for r in results if r.ok} == {BulkOutcome.SUBMITTED}
    assert await ledger_states(ledger) == {LedgerState.SUBMITTED: 4, LedgerState.UNKNOWN: 1}


async def test_a_503_before_acting_is_sent_again_over_the_http1_pool() -> None:
    async with emulator() as emu, session_for(emu) as session:
        emu.faults.add("create", status=503, retry_after=0.05, times=2, after=1)
        results = await run_all(session, emu, "echo", [{"i": i} for i in range(3)])
        await emu.wait_idle()
    assert all(r.ok for r in results)
    assert emu.counts["create"] == 5 and len(emu.store.jobs) == 3


async def test_downloads_land_under_the_job_id_and_are_not_repeated(tmp_path: Path) -> None:
    ledger, out = tmp_path / "run.db", tmp_path / "out"
    inputs = [{"count": 2, "size": 3000, "seed": i} for i in range(4)]
    reports: list[TransferProgress] = []
    async with emulator() as emu, session_for(emu) as session:
        first = await run_all(
            session, emu, "files", inputs, concurrency=4, download_to=out, ledger=ledger,
            poll=FAST_POLL, download_concurrency=2, progress=reports.append,
        )  # fmt: skip
        requests_after_first = dict(emu.counts)
        second = await run_all(
            session, emu, "files", inputs, concurrency=4, download_to=out, ledger=ledger,
            poll=FAST_POLL,
        )  # fmt: skip
        assert dict(emu.counts) == requests_after_first  # nothing asked, nothing downloaded

    assert all(r.outcome is BulkOutcome.DOWNLOADED and r.ok for r in first)
    for result in first:
        assert result.job is not None and result.paths is not None
        digests = result.job.result["files"]
        assert sorted(result.paths) == ["file_000.bin", "sub/file_001.bin"]
        for name, path in result.paths.items():
            assert path == out / result.job.job_id / name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[name]
    assert await ledger_states(ledger) == {LedgerState.DOWNLOADED: 4}
    # progress names each file by its path under download_to: <job_id>/<filename>
    finals = {p.filename: p.done for p in reports if p.done == p.total}
    assert finals == {
        f"{r.job.job_id}/{name}": 3000 for r in first if r.job for name in r.paths or {}
    }
    assert all(r.outcome is BulkOutcome.DOWNLOADED and r.resumed for r in second)
    assert {r.index: r.paths for r in second} == {r.index: r.paths for r in first}


async def test_a_create_left_unanswered_by_a_crash_is_never_resent_on_its_own(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "run.db"
    inputs = [{"i": 0}, {"i": 1}]
    async with await Ledger.open(ledger) as opened:  # a run died between mark and answer
        await opened.mark_creating(bulk.input_key(inputs[0]), 0)
    async with emulator() as emu, session_for(emu) as session:
        results = await run_all(session, emu, "echo", inputs, ledger=ledger)
        assert {r.index: r.outcome for r in results} == {
            0: BulkOutcome.UNKNOWN,
            1: BulkOutcome.SUBMITTED,
        }
        assert emu.counts["create"] == 1
        forced = await run_all(session, emu, "echo", inputs, ledger=ledger, resubmit_unknown=True)
        await emu.wait_idle()
    assert emu.counts["create"] == 2
    assert {r.index: r.outcome for r in forced} == {
        0: BulkOutcome.SUBMITTED,
        1: BulkOutcome.SUBMITTED,
    }
    assert await ledger_states(ledger) == {LedgerState.SUBMITTED: 2}


async def test_inputs_with_one_key_are_one_job_per_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "run.db"
    inputs = [{"i": i, "note": f"retry {i}"} for i in range(6)]

    def by_i_mod_3(args: Any) -> str:
        return f"item-{args['i'] % 3}"

    async with emulator() as emu, session_for(emu) as session:
        results = await run_all(
            session, emu, "echo", inputs, concurrency=1, ledger=ledger, key=by_i_mod_3
        )
        await emu.wait_idle()
    assert emu.counts["create"] == 3
    assert {r.key for r in results} == {"item-0", "item-1", "item-2"}
    assert [r.resumed for r in results] == [False] * 3 + [True] * 3
    assert {r.index: r.job_id for r in results}[3] == {r.index: r.job_id for r in results}[0]
