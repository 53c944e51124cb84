"""The machinery of one ``submit_many`` run: the feeder, the submitters, the followers.

The feeder takes inputs while fewer than ``max_in_flight`` are taken and not yet handed to the
consumer; ``concurrency`` submitters take them one by one (key, ledger lookup, create); a
follower task per created job waits for it and downloads its outputs when the run does.
Results go to a queue the consumer reads, in completion order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._http import bulk_traffic
from ..errors import ConfigurationError, DuplicateInputError, LedgerError
from ..instrumentation.scopes import operation
from ..job import JobHandle
from .counters import RunCounters
from .create import JobCreator
from .follow import JobFollower
from .ledger import LedgerEntry, LedgerStore
from .options import BulkOptions
from .result import BulkOutcome, BulkResult

if TYPE_CHECKING:
    from .._http import Transport

log = logging.getLogger("chutes_jobs")

#: What ``anext`` returns once the inputs are exhausted.
_END = object()


class BulkRun:
    """The machinery of one ``submit_many`` call: gates, ledger, tasks and the result queue."""

    def __init__(self, session: Transport, options: BulkOptions, ledger: LedgerStore | None):
        self.options = options
        self.ledger = ledger
        self.creator = JobCreator(session, options, ledger)
        self.follower = JobFollower(options, ledger)
        #: Inputs taken from the iterable and not yet handed to the consumer.
        self.in_flight = asyncio.Semaphore(options.max_in_flight)
        self.pending: asyncio.Queue[tuple[int, Any] | None] = asyncio.Queue()
        self.results: asyncio.Queue[BulkResult | None] = asyncio.Queue()
        self.input_error: BaseException | None = None
        #: How many inputs were taken from the iterable so far.
        self.taken = 0
        self.stopping = False
        #: Keys being worked on in this run (ledger runs only): key -> input index.
        self.active_keys: dict[str, int] = {}
        self.submitters: list[asyncio.Task[None]] = []
        self.followers: set[asyncio.Task[None]] = set()
        self.hooks = session.hooks
        #: Results handed out so far, per outcome (told to the instrumentation hooks).
        self.counters = RunCounters(session.hooks)

    # -- the producer ------------------------------------------------------------------------

    async def feed(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Read inputs lazily, taking the next one only while ``max_in_flight`` allows."""
        try:
            await self._feed(aiter_any(inputs))
        except Exception as exc:  # the iterable itself failed: finish what was taken, then raise
            log.error("reading the inputs failed after %d of them: %s", self.taken, exc)
            self.input_error = exc

    async def _feed(self, inputs: AsyncIterator[Any]) -> None:
        while True:
            await self.in_flight.acquire()
            try:
                args = await anext(inputs, _END)
            except BaseException:
                self.in_flight.release()
                raise
            if args is _END:
                self.in_flight.release()
                return
            self.pending.put_nowait((self.taken, args))
            self.taken += 1

    # -- the submitters ------------------------------------------------------------------------

    async def submitter(self) -> None:
        """Take inputs until the feeder is done; one input's failure never stops the rest."""
        while not self.stopping and (item := await self.pending.get()) is not None:
            index, args = item
            try:
                await self.take(index, args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad input or key function: report, go on
                log.warning("input %d not submitted: %s", index, exc)
                self.emit(BulkResult(index, "", BulkOutcome.NOT_SUBMITTED, error=exc))

    async def take(self, index: int, args: Any) -> None:
        """Submit (or resume) one input; emit its result or hand its job to a follower."""
        if not isinstance(args, Mapping):
            error = ConfigurationError(f"input {index} is not a mapping of job arguments")
            return self.emit(BulkResult(index, "", BulkOutcome.NOT_SUBMITTED, error=error))
        key = self.options.key(args)
        if self.ledger is None:
            created = await self.creator.create_or_resume(index, key, args, None)
            return self.after_create(index, key, created, None)
        if key in self.active_keys:
            error = DuplicateInputError(
                f"input {index} has the same key as input {self.active_keys[key]}, which is "
                "in progress in this run: not submitted again"
            )
            return self.emit(BulkResult(index, key, BulkOutcome.NOT_SUBMITTED, error=error))
        self.active_keys[key] = index
        try:
            if self.creator.open:  # one ledger call: mark it creating unless already known
                created, entry = await self.creator.begin(index, key, args)
            else:
                entry = await self.ledger.get(key)
                created = await self.creator.create_or_resume(index, key, args, entry)
        except BaseException:
            del self.active_keys[key]
            raise
        # Only an entry that already had a job makes this a resumed input.
        self.after_create(index, key, created, entry if entry and entry.job_id else None)

    def after_create(
        self, index: int, key: str, created: JobHandle | BulkResult, entry: LedgerEntry | None
    ) -> None:
        """Emit a final result, or start following the job when the run waits.

        ``entry`` is the ledger row of an earlier run that had already created this job.
        """
        if isinstance(created, BulkResult):
            return self.emit(created)
        if self.stopping:  # recorded in the ledger: the next run follows it
            return None
        if self.options.waits:
            follower = asyncio.create_task(self.follow(index, key, created, entry))
            self.followers.add(follower)
            follower.add_done_callback(self.followers.discard)
            return None
        outcome = BulkOutcome.SUBMITTED
        self.emit(BulkResult(index, key, outcome, created, created.job, resumed=entry is not None))

    def emit(self, result: BulkResult) -> None:
        """Hand a result to the consumer."""
        if result.key:
            self.active_keys.pop(result.key, None)
        self.results.put_nowait(result)
        self.counters.add(result.outcome, self.taken)

    # -- the followers -------------------------------------------------------------------------

    async def follow(
        self, index: int, key: str, handle: JobHandle, entry: LedgerEntry | None
    ) -> None:
        """Wait for one job and download its outputs; emit its result."""
        try:
            result = await self.follower.finish(index, key, handle, entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, LedgerError):  # not recorded (a database outage...): no bug
                log.error("following job %s of input %d: %s", handle.id, index, exc)
            else:
                log.exception("following job %s of input %d failed unexpectedly", handle.id, index)
            result = BulkResult(index, key, BulkOutcome.SUBMITTED, handle, handle.job, error=exc)
        self.emit(result)

    # -- the whole run -----------------------------------------------------------------------

    async def observed_main(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        """:meth:`main` as the ``submit_many`` operation: the tasks it starts inherit its
        context, so a tracer's span of the run is the parent of every call made."""
        with operation(self.hooks, "submit_many"):
            try:
                await self.main(inputs)
            finally:
                self.counters.tell(self.taken, final=False)  # while the run's span is open

    async def main(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Feed, submit, follow; then tell the consumer the run is over.

        The run's tasks are bulk traffic: their JSON calls may take the HTTP/1.1 lane.
        """
        with bulk_traffic():  # the tasks started here inherit it; the caller's context does not
            self.submitters = [
                asyncio.create_task(self.submitter()) for _ in range(self.options.concurrency)
            ]
        try:
            await self.feed(inputs)
            for _ in self.submitters:
                self.pending.put_nowait(None)
            # asyncio.wait, not gather: cancelling main must not cancel a create under way
            await asyncio.wait(self.submitters)
            while self.followers:
                await asyncio.wait(self.followers)
        finally:
            self.results.put_nowait(None)

    async def stop(self, main: asyncio.Task[None]) -> None:
        """Stop reading and creating; let creates under way finish and be recorded."""
        self.stopping = True
        main.cancel()
        creating = self.creator.creating
        for task in [*self.submitters, *self.followers]:
            if task not in creating:
                task.cancel()
        busy = [t for t in self.submitters if t in creating]
        if busy:
            log.info("stopping: %d create(s) under way get to finish", len(busy))
            _, late = await asyncio.wait(busy, timeout=self.options.cancel_grace)
            for task in late:
                task.cancel()
        for task in self.followers:  # none is started once stopping, but be sure
            task.cancel()
        await asyncio.gather(main, *self.submitters, *self.followers, return_exceptions=True)


def aiter_any(inputs: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    """The inputs as an async iterator, whether they are an iterable or an async one."""
    return aiter(inputs) if isinstance(inputs, AsyncIterable) else _aiter_sync(inputs)


async def _aiter_sync(inputs: Iterable[Any]) -> AsyncIterator[Any]:
    """A plain iterable read as an async one, one item per ``anext``."""
    for args in inputs:
        yield args
