"""A ``submit_many`` run over a shared ledger: many processes, possibly on many machines, one batch.

Every process is started with the same chute, method and inputs. Instead of the feeder handing
inputs straight to the submitters (``run``), here:

* a *loader* reads the inputs lazily and loads them into the ledger in chunks (``todo``; a key
  already there, loaded by whichever process came first, is left as it is);
* a *claimer* claims rows the run works on (``todo``; ``creating`` rows whose process died;
  with ``wait``/``download_to`` also ``submitted``/``finished`` rows nobody follows; refused or
  unknown rows of earlier runs as ``submit_many`` would retry them) and hands them to the
  submitters, as many as ``max_in_flight`` allows;
* a *heartbeat* renews this process's leases and reads the shared pause row every second, so a
  429 with Retry-After in one process pauses them all, and a daily-quota 429 stops them all.

Each process yields the results of the inputs it worked on; the batch's totals are the
ledger's (``Ledger.summary()``). The run ends when no row is left that this run would work on:
rows other processes hold are waited for, and taken over once their lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigurationError,
    LeaseLostError,
    LedgerError,
    QuotaExceededError,
    RateLimitError,
    UnknownCreateError,
)
from ..job import JobHandle
from ..retry import RetryPolicy
from .gate import RateGate
from .ledger.base import Claimed, LedgerEntry, LedgerState, Pause, SharedLedger, WorkRule
from .options import BulkOptions
from .result import BulkOutcome, BulkResult
from .run import BulkRun, aiter_any

if TYPE_CHECKING:
    from .._http import Transport

log = logging.getLogger("chutes_jobs")

_S = LedgerState
#: Inputs loaded per statement.
LOAD_CHUNK = 500
#: Seconds between two reads of the shared pause row (and at most between lease renewals).
HEARTBEAT = 1.0
#: Claims failing in a row (a second apart) before the run gives up.
MAX_CLAIM_FAILURES = 10


def work_rule(options: BulkOptions) -> WorkRule:
    """Which rows a run with ``options`` claims, and which it keeps holding after a write."""
    states = {_S.TODO, _S.CREATING}
    hold = {_S.CREATING}
    if options.waits:
        states.add(_S.SUBMITTED)
        hold.add(_S.SUBMITTED)
    if options.download_to is not None:
        states.add(_S.FINISHED)
        hold.add(_S.FINISHED)
    retry = {_S.NOT_SUBMITTED} | ({_S.UNKNOWN} if options.resubmit_unknown else set())
    return WorkRule(frozenset(states), frozenset(retry), frozenset(hold))


class SharedGate(RateGate):
    """The rate gate, told to every process: a 429 here is written to the shared pause row."""

    def __init__(
        self, ledger: SharedLedger, spawn: Callable[[Coroutine[Any, Any, Any]], None]
    ) -> None:
        super().__init__()
        self._ledger = ledger
        self._spawn = spawn

    def rate_limited(self, exc: RateLimitError, policy: RetryPolicy) -> None:
        super().rate_limited(exc, policy)
        if exc.is_quota:
            self._spawn(self._ledger.publish_quota(str(exc)))
        else:
            remaining = self.resume_at - asyncio.get_running_loop().time()
            self._spawn(self._ledger.publish_pause(max(remaining, 0.0)))


class SharedRun(BulkRun):
    """The machinery of one ``submit_many`` call over a shared ledger."""

    def __init__(self, session: Transport, options: BulkOptions, ledger: SharedLedger):
        super().__init__(session, options, ledger)
        self.shared = ledger
        self.creator.rate_gate = SharedGate(ledger, self.spawn)
        #: Keys this run stopped working on with an error: never claimed again by it.
        self.gave_up: set[str] = set()
        #: Claimed rows not yet handed to the consumer (in the queue, creating or following).
        self.busy = 0
        self.loaded = False
        self.progress = asyncio.Event()  # something changed: loaded more, finished an input
        self.background: set[asyncio.Task[Any]] = set()
        self.claimed: asyncio.Queue[Claimed | None] = asyncio.Queue()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run a ledger call in the background (kept until done; a failure is logged)."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("shared ledger: %s", task.exception())

    # -- the loader ---------------------------------------------------------------------------

    async def load(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Load every input into the ledger, in chunks; report the ones that cannot be."""
        chunk: list[tuple[str, int, str]] = []
        try:
            async for args in aiter_any(inputs):
                index, self.taken = self.taken, self.taken + 1
                row = await self._row(index, args)
                if row is not None:
                    chunk.append(row)
                if len(chunk) >= LOAD_CHUNK:
                    await self.shared.load(chunk)
                    chunk = []
                    self.progress.set()
            if chunk:
                await self.shared.load(chunk)
        except Exception as exc:  # the iterable or the ledger failed: work what was loaded
            log.error("loading the inputs failed after %d of them: %s", self.taken, exc)
            self.input_error = exc
        finally:
            self.loaded = True
            self.progress.set()

    async def _row(self, index: int, args: Any) -> tuple[str, int, str] | None:
        """The ledger row of one input, or None (its NOT_SUBMITTED result is emitted)."""
        try:
            if not isinstance(args, Mapping):
                raise ConfigurationError(f"input {index} is not a mapping of job arguments")
            key = self.options.key(args)
            text = json.dumps(args, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            await self.in_flight.acquire()
            error = exc if isinstance(exc, ConfigurationError) else ConfigurationError(
                f"input {index} cannot be stored in the ledger: {exc}")  # fmt: skip
            super().emit(BulkResult(index, "", BulkOutcome.NOT_SUBMITTED, error=error))
            return None
        return key, index, text

    # -- the claimer --------------------------------------------------------------------------

    async def claim(self) -> None:
        """Claim rows while there is room, until nothing is left this run would work on.

        The database unreachable for a while (``MAX_CLAIM_FAILURES`` tries in a row, a second
        apart, each waiting up to 10 s for a connection: about two minutes with the server
        gone) ends the run with its :class:`LedgerError`.
        """
        failures = 0
        while not self.stopping:
            try:
                if await self._claim_some():
                    return
                failures = 0
            except LedgerError as exc:
                failures += 1
                if failures >= MAX_CLAIM_FAILURES:
                    raise
                log.warning("shared ledger: claiming failed, trying again: %s", exc)
                await asyncio.sleep(HEARTBEAT)

    async def _claim_some(self) -> bool:
        """Claim what there is room for; True once nothing is left at all."""
        room = await self._room()
        try:
            claimed = await self.shared.claim(room, sorted(self.gave_up))
        except BaseException:
            claimed = []
            raise
        finally:
            for _ in range(room - len(claimed)):  # the slots no claimed row holds
                self.in_flight.release()
        for item in claimed:
            self.busy += 1
            self.claimed.put_nowait(item)
        return not claimed and await self._finished()

    async def _room(self) -> int:
        """Wait for room in ``max_in_flight`` and for the submitters to run low; take up to
        twice ``concurrency`` slots (each claimed row holds one until consumed)."""
        want = 2 * self.options.concurrency
        while self.claimed.qsize() >= self.options.concurrency:
            await self._changed(HEARTBEAT)
        await self.in_flight.acquire()
        room = 1
        while room < want and not self.in_flight.locked():
            await self.in_flight.acquire()  # does not suspend while unlocked
            room += 1
        return room

    async def _finished(self) -> bool:
        """Nothing claimable now: True once nothing is left at all, else wait a little
        (for loading, for this process's own work, for others' leases)."""
        self.progress.clear()  # before the query: what happens during it wakes the wait below
        if not self.loaded:
            await self._changed(HEARTBEAT, clear=False)
            return False
        left, first_expiry = await self.shared.outstanding(sorted(self.gave_up))
        if left == 0 and self.busy == 0:
            return True
        wait = HEARTBEAT if first_expiry is None else min(max(first_expiry, 0.05), HEARTBEAT)
        await self._changed(wait, clear=False)
        return False

    async def _changed(self, timeout: float, *, clear: bool = True) -> None:
        """Wait until something changes (loading, an input finished) or ``timeout``."""
        if clear:
            self.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.progress.wait(), timeout)

    # -- the heartbeat ------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Renew the leases every third of a lease; follow the shared pause every second."""
        renew_every = self.shared.lease / 3
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(min(HEARTBEAT, renew_every))
            try:
                if time.monotonic() - last_renewal >= renew_every:
                    last_renewal = time.monotonic()
                    await self.shared.renew()
                self._follow_pause(await self.shared.read_pause())
            except Exception as exc:  # the database is unreachable: try again next beat
                log.warning("shared ledger heartbeat failed: %s", exc)

    def _follow_pause(self, pause: Pause) -> None:
        gate = self.creator.rate_gate
        if pause.resume_in > 0:
            gate.pause(pause.resume_in)
        if pause.quota is not None and gate.quota_error is None:
            log.warning("daily job quota exhausted (seen by another process): no more creates")
            gate.quota_error = QuotaExceededError(f"daily job quota exhausted: {pause.quota}")

    # -- the submitters -----------------------------------------------------------------------

    async def submitter(self) -> None:
        """Work claimed rows until the claimer is done; one row's failure never stops the rest."""
        while not self.stopping and (item := await self.claimed.get()) is not None:
            self.progress.set()
            entry = item.entry
            try:
                await self.work(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("input %d not submitted: %s", entry.input_index, exc)
                self.emit(BulkResult(entry.input_index, entry.key, BulkOutcome.NOT_SUBMITTED,
                                     error=exc))  # fmt: skip

    async def work(self, item: Claimed) -> None:
        """Create, mark unknown, or follow one claimed row, by its state."""
        entry, index, key = item.entry, item.entry.input_index, item.entry.key
        if entry.state is _S.CREATING and not self.options.resubmit_unknown:
            await self.shared.mark_unknown(key, "its process stopped while creating")
            return self.emit(_unknown(index, key))
        if entry.job_id is not None:
            created = await self.creator.create_or_resume(index, key, {}, entry)
            return self.after_create(index, key, created, entry)
        if item.args is None:
            error = ConfigurationError(f"input {index}: its arguments are not in the ledger")
            return self.emit(BulkResult(index, key, BulkOutcome.NOT_SUBMITTED, error=error))
        fresh = entry.state in (_S.TODO, _S.NOT_SUBMITTED)
        args = json.loads(item.args)
        created = await self.creator.create_or_resume(index, key, args, None if fresh else entry)
        self.after_create(index, key, created, None)

    def after_create(
        self, index: int, key: str, created: JobHandle | BulkResult, entry: LedgerEntry | None
    ) -> None:
        if not isinstance(created, BulkResult) and self.stopping:
            self._done(key, drop=True)  # not followed: the next run (or another process) does
        super().after_create(index, key, created, entry)

    def emit(self, result: BulkResult) -> None:
        """Hand a result to the consumer; let go of a row this run stops working on."""
        if isinstance(result.error, LeaseLostError):  # another process has it: not ours
            log.info("input %d: %s", result.index, result.error)
            return self._done(result.key, drop=True)
        if result.error is not None and result.key:
            self._done(result.key, drop=False)
        else:
            self.busy -= 1
            self.progress.set()
        super().emit(result)

    def _done(self, key: str, *, drop: bool) -> None:
        self.busy -= 1
        self.progress.set()
        if drop:
            self.in_flight.release()
        self.gave_up.add(key)
        self.spawn(self.shared.release(key))

    # -- the whole run ------------------------------------------------------------------------

    async def feed(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Load, claim and beat until nothing is left; the submitters take the claimed rows."""
        await self.shared.start_run(self.options.chute_id, self.options.method,
                                    work_rule(self.options))  # fmt: skip
        self._follow_pause(await self.shared.read_pause())  # a pause may be in force already
        loader = asyncio.create_task(self.load(inputs))
        beat = asyncio.create_task(self.heartbeat())
        try:
            await self.claim()
        finally:
            for task in (loader, beat):
                task.cancel()
            await asyncio.gather(loader, beat, return_exceptions=True)
            for _ in self.submitters:
                self.claimed.put_nowait(None)

    async def main(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        try:
            await super().main(inputs)
        finally:
            if self.background:  # lease releases: a stalled database must not hold the stop
                await asyncio.wait(set(self.background), timeout=5.0)


def _unknown(index: int, key: str) -> BulkResult:
    error = UnknownCreateError(
        f"input {index}: the process creating it stopped (its lease expired) before the answer "
        "was recorded; a job may exist for it (pass resubmit_unknown=True to create it again)"
    )
    return BulkResult(index, key, BulkOutcome.UNKNOWN, error=error, resumed=True)
