"""``submit_many``: thousands of jobs with bounded concurrency, group rate limiting and a ledger.

How a run is built, top-down:

* a *feeder* reads the inputs lazily: it takes the next input only while fewer than
  ``max_in_flight`` inputs are taken and not yet handed to the consumer, so a paused consumer
  pauses the reading (a million inputs are never materialized);
* ``concurrency`` *submitters* take inputs one by one: key, ledger lookup, create;
* with ``wait=True`` or ``download_to=``, each created job gets a *follower* task that polls it
  (at most ``poll_concurrency`` GETs at once) and downloads its outputs (at most
  ``download_concurrency`` jobs at once);
* results go to a queue the consumer reads, in completion order.

Creates are billed and not idempotent (PROTOCOL.md, "Create"). A 429 with Retry-After pauses
every submitter together (one :class:`RateGate`), checked right before each create is sent; a
daily-quota 429 stops all further creates. With a ledger, every step of every key is durable
before the next one, so a re-run skips what was submitted, resumes waiting and downloading, and
never creates a job twice. A create whose answer was lost is recorded ``unknown`` and reported,
never re-sent unless ``resubmit_unknown=True``.

Stopping (the consumer's task cancelled, ``aclose()``, or breaking out of the loop): no new
input is read and no new create starts; creates under way finish and are recorded (after
``cancel_grace`` seconds they are cancelled and recorded ``unknown``); polling and downloads stop
(the ledger resumes them on the next run).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from .errors import (
    APIStatusError,
    ChutesError,
    ConfigurationError,
    JobFailedError,
    JobTimeoutError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
)
from .job import JobHandle, create_job
from .ledger import Ledger, LedgerEntry, LedgerError, LedgerState
from .models import Job
from .polling import PollPolicy

if TYPE_CHECKING:
    from .session import ChutesSession

__all__ = [
    "BulkOutcome",
    "BulkResult",
    "QuotaExceededError",
    "RateGate",
    "UnknownCreateError",
    "input_key",
    "submit_many",
]

log = logging.getLogger("chutes_jobs")

#: Inputs taken and not yet handed to the consumer, when waiting for results.
DEFAULT_MAX_IN_FLIGHT_WAITING = 4096
#: Without waiting, inputs taken ahead per submitter (keeps submitters busy, reads lazily).
READ_AHEAD_PER_SUBMITTER = 4
#: How many times one input may be refused by a (non-quota) 429 before it is reported.
MAX_RATE_LIMITED = 20
#: Default seconds creates under way get to finish once the run is stopped.
DEFAULT_CANCEL_GRACE = 30.0

_S = LedgerState


class BulkOutcome(enum.Enum):
    """Where one input of a batch ended up."""

    SUBMITTED = "submitted"  #: created (not waited for, or the wait failed: see ``error``)
    FINISHED = "finished"  #: created, waited, finished successfully
    FAILED = "failed"  #: created, finished as a failure
    DOWNLOADED = "downloaded"  #: finished and its outputs are on disk
    NOT_SUBMITTED = "not_submitted"  #: no job was created for it (refused, quota, bad input)
    UNKNOWN = "unknown"  #: the create may or may not have reached the server


class QuotaExceededError(ChutesError):
    """The daily job quota is exhausted: this input was not submitted."""


class UnknownCreateError(ChutesError):
    """A create's answer was lost: a job may exist (and be billed) for this input.

    It is never re-sent on its own; pass ``resubmit_unknown=True`` once you have checked.
    """


class DuplicateInputError(ConfigurationError):
    """Another input of this run with the same key is still in progress; this one was skipped."""


@attrs.frozen
class BulkResult:
    """One input's result, yielded by :meth:`ChutesSession.submit_many` in completion order.

    ``index`` is the input's position, ``key`` its ledger key (empty when it could not be
    computed), ``handle`` the job's handle (None when no job was created), ``job`` the last
    snapshot seen (the final one when waited), ``paths`` the downloaded ``{filename: path}``,
    ``error`` what went wrong (None on success), ``resumed`` True when an earlier run had
    already submitted this input.
    """

    index: int
    key: str
    outcome: BulkOutcome
    handle: JobHandle | None = None
    job: Job | None = None
    paths: Mapping[str, Path] | None = None
    error: BaseException | None = None
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing went wrong for this input."""
        return self.error is None

    @property
    def job_id(self) -> str | None:
        """The id of the job created for this input, if any."""
        return self.handle.id if self.handle is not None else None


def input_key(args: Mapping[str, Any]) -> str:
    """The default key of an input: sha256 of its canonical JSON (sorted keys, compact)."""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RateGate:
    """One pause shared by every submitter: a 429 stops them all until its Retry-After."""

    def __init__(self) -> None:
        self.resume_at = 0.0
        #: 429s in a row without a successful create (drives the backoff without Retry-After).
        self.strikes = 0

    def pause(self, seconds: float) -> None:
        """Hold every submitter for ``seconds`` from now (never shortens a longer pause)."""
        now = asyncio.get_running_loop().time()
        self.resume_at = max(self.resume_at, now + seconds)

    async def wait(self) -> None:
        """Return once no pause is in force (without suspending when none is)."""
        loop = asyncio.get_running_loop()
        while (remaining := self.resume_at - loop.time()) > 0:
            await asyncio.sleep(remaining)


@attrs.define
class BulkOptions:
    """The settings of one ``submit_many`` run."""

    chute_id: str
    method: str
    concurrency: int
    wait: bool
    download_to: Path | None
    key: Callable[[Mapping[str, Any]], str]
    disk_gb: float | None
    poll: PollPolicy
    poll_concurrency: int
    download_concurrency: int
    wait_timeout: float | None
    resubmit_unknown: bool
    max_in_flight: int
    cancel_grace: float

    @property
    def waits(self) -> bool:
        """Whether each job is followed to its end (``wait`` or ``download_to``)."""
        return self.wait or self.download_to is not None


#: What a create attempt came to: the job's handle, a final result, or None for "try again".
_Created: TypeAlias = "JobHandle | BulkResult | None"


class BulkRun:
    """The machinery of one ``submit_many`` call: gates, ledger, tasks and the result queue."""

    def __init__(self, session: ChutesSession, options: BulkOptions, ledger: Ledger | None):
        self.session = session
        self.options = options
        self.ledger = ledger
        self.rate_gate = RateGate()
        self.poll_gate = asyncio.Semaphore(options.poll_concurrency)
        self.download_gate = asyncio.Semaphore(options.download_concurrency)
        #: Inputs taken from the iterable and not yet handed to the consumer.
        self.in_flight = asyncio.Semaphore(options.max_in_flight)
        self.pending: asyncio.Queue[tuple[int, Any] | None] = asyncio.Queue()
        self.results: asyncio.Queue[BulkResult | None] = asyncio.Queue()
        self.quota_error: RateLimitError | None = None
        self.input_error: BaseException | None = None
        self.last_rate_limit: RateLimitError | None = None
        #: How many inputs were taken from the iterable so far.
        self.taken = 0
        self.stopping = False
        #: Keys being worked on in this run (ledger runs only): key -> input index.
        self.active_keys: dict[str, int] = {}
        self.submitters: list[asyncio.Task[None]] = []
        self.followers: set[asyncio.Task[None]] = set()
        #: Submitters inside a create (ledger mark, POST, ledger outcome): not cancelled at once.
        self.creating: set[asyncio.Task[Any]] = set()
        # 429s are handled here, as a group, not by each request's own retry loop.
        self.create_policy = attrs.evolve(session.retry_policy, retry_rate_limits=False)

    # -- the producer ------------------------------------------------------------------------

    async def feed(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Read inputs lazily, taking the next one only while ``max_in_flight`` allows."""
        try:
            if isinstance(inputs, AsyncIterable):
                await self._feed_async(aiter(inputs))
            else:
                await self._feed_sync(iter(inputs))
        except Exception as exc:  # the iterable itself failed: finish what was taken, then raise
            log.error("reading the inputs failed after %d of them: %s", self.taken, exc)
            self.input_error = exc

    async def _feed_sync(self, inputs: Iterator[Any]) -> None:
        while True:
            await self.in_flight.acquire()
            try:
                args = next(inputs)
            except StopIteration:  # (a coroutine must not let StopIteration escape)
                self.in_flight.release()
                return
            except BaseException:
                self.in_flight.release()
                raise
            self.pending.put_nowait((self.taken, args))
            self.taken += 1

    async def _feed_async(self, inputs: AsyncIterator[Any]) -> None:
        while True:
            await self.in_flight.acquire()
            try:
                args = await anext(inputs)
            except StopAsyncIteration:
                self.in_flight.release()
                return
            except BaseException:
                self.in_flight.release()
                raise
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
            return self.after_create(index, key, await self.guarded(index, key, args, None), None)
        if key in self.active_keys:
            error = DuplicateInputError(
                f"input {index} has the same key as input {self.active_keys[key]}, which is "
                "in progress in this run: not submitted again"
            )
            return self.emit(BulkResult(index, key, BulkOutcome.NOT_SUBMITTED, error=error))
        self.active_keys[key] = index
        try:
            entry = await self.ledger.get(key)
            created = await self.guarded(index, key, args, entry)
        except BaseException:
            del self.active_keys[key]
            raise
        # Only an entry that already had a job makes this a resumed input.
        self.after_create(index, key, created, entry if entry and entry.job_id else None)

    async def guarded(
        self, index: int, key: str, args: Mapping[str, Any], entry: LedgerEntry | None
    ) -> JobHandle | BulkResult:
        """Submit or resume; a failure that escapes (the ledger broke) is reported UNKNOWN,
        since it may have struck after the create was sent."""
        try:
            if self.ledger is None:
                return await self.submit(index, key, args)
            return await self.submit_or_resume(index, key, args, entry)
        except (ChutesError, OSError) as exc:
            log.error("input %d: %s", index, exc)
            return BulkResult(index, key, BulkOutcome.UNKNOWN, error=exc)

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

    # -- resuming from the ledger ------------------------------------------------------------

    async def submit_or_resume(
        self, index: int, key: str, args: Mapping[str, Any], entry: LedgerEntry | None
    ) -> JobHandle | BulkResult:
        """The job's handle (created now or found in the ledger), or a final result."""
        state = entry.state if entry is not None else None
        if entry is None or state is _S.NOT_SUBMITTED:
            return await self.submit(index, key, args)
        if state in (_S.CREATING, _S.UNKNOWN):
            if self.options.resubmit_unknown:
                return await self.submit(index, key, args, unknown_row=state)
            error = UnknownCreateError(
                f"input {index}: an earlier create's answer was lost, a job may exist for it "
                "(pass resubmit_unknown=True to create it again)"
            )
            return BulkResult(index, key, BulkOutcome.UNKNOWN, error=error, resumed=True)
        assert entry.job_id is not None
        handle = self.session.job(entry.job_id)
        if self.options.waits and state is not _S.DOWNLOADED:
            return handle
        return _resumed_result(index, entry, handle)

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self,
        index: int,
        key: str,
        args: Mapping[str, Any],
        *,
        unknown_row: LedgerState | None = None,
    ) -> JobHandle | BulkResult:
        """Create the job, pausing with the group on 429s; stop at the daily quota."""
        refusals = 0
        while True:
            if self.quota_error is not None:
                return self.quota_result(index, key, unknown_row)
            await self.rate_gate.wait()
            task = asyncio.current_task()
            assert task is not None
            self.creating.add(task)
            try:
                created = await self.create_once(index, key, args, unknown_row)
            finally:
                self.creating.discard(task)
            if created is not None:
                return created
            refusals += 1
            if refusals >= MAX_RATE_LIMITED:
                assert self.last_rate_limit is not None
                return self.not_submitted(index, key, self.last_rate_limit, unknown_row)
            if unknown_row is _S.CREATING:
                unknown_row = _S.UNKNOWN  # create_once re-marked it

    async def create_once(
        self, index: int, key: str, args: Mapping[str, Any], unknown_row: LedgerState | None
    ) -> _Created:
        """One create, recorded before (``creating``) and after (its outcome) in the ledger.

        A row already ``unknown`` (resubmitted on request) stays ``unknown`` until a create
        answers with a job: the earlier create may still exist.
        """
        sent = False
        try:
            await self.mark_before_create(index, key, unknown_row)
            await self.rate_gate.wait()  # a pause may have begun during the ledger write
            if self.quota_error is not None:
                await self.mark_refused(key, str(self.quota_error), unknown_row)
                return self.quota_result(index, key, unknown_row)
            sent = True  # from here on the POST may reach the server
            handle = await create_job(
                self.session,
                self.options.chute_id,
                self.options.method,
                args,
                disk_gb=self.options.disk_gb,
                retry_policy=self.create_policy,
            )
        except asyncio.CancelledError:
            await self.on_create_cancelled(index, key, sent, unknown_row)
            raise
        except RateLimitError as exc:
            return await self.on_rate_limited(index, key, exc, unknown_row)
        except ChutesError as exc:
            if not sent:
                raise  # the ledger refused the mark: nothing was sent
            return await self.on_create_failed(index, key, exc, unknown_row)
        self.rate_gate.strikes = 0
        return await self.on_created(index, key, handle)

    async def mark_before_create(
        self, index: int, key: str, unknown_row: LedgerState | None
    ) -> None:
        """Durably record that a create is about to be sent (double-create guard)."""
        if self.ledger is None:
            return
        if unknown_row is None:
            await self.ledger.mark_creating(key, index)
        elif unknown_row is _S.CREATING:  # an earlier run died mid-create: that is unknown
            await self.ledger.mark_unknown(key, "the run stopped while creating")

    async def on_created(self, index: int, key: str, handle: JobHandle) -> JobHandle | BulkResult:
        if self.ledger is not None:
            try:
                await self.ledger.mark_submitted(key, handle.id)
            except (LedgerError, OSError) as exc:
                log.error(
                    "job %s created for input %d, ledger not updated: %s", handle.id, index, exc
                )
                return BulkResult(index, key, BulkOutcome.SUBMITTED, handle, handle.job, error=exc)
        return handle

    async def on_rate_limited(
        self, index: int, key: str, exc: RateLimitError, unknown_row: LedgerState | None
    ) -> _Created:
        await self.mark_refused(key, str(exc), unknown_row)
        if exc.is_quota:
            if self.quota_error is None:
                log.warning("daily job quota exhausted: no further inputs are submitted")
                self.quota_error = exc
            return self.quota_result(index, key, unknown_row)
        self.last_rate_limit = exc
        self.rate_gate.strikes += 1
        pause = self.create_policy.backoff(self.rate_gate.strikes, exc)
        log.info("rate limited: every submitter pauses for %.2f s", pause)
        self.rate_gate.pause(pause)
        return None

    async def on_create_failed(
        self, index: int, key: str, exc: ChutesError, unknown_row: LedgerState | None
    ) -> BulkResult:
        if _create_may_have_happened(exc):
            if self.ledger is not None:
                await self.ledger.mark_unknown(key, str(exc))
            error = UnknownCreateError(f"input {index}: create outcome unknown ({exc})")
            error.__cause__ = exc
            return BulkResult(index, key, BulkOutcome.UNKNOWN, error=error)
        await self.mark_refused(key, str(exc), unknown_row)
        return self.not_submitted(index, key, exc, unknown_row)

    async def on_create_cancelled(
        self, index: int, key: str, sent: bool, unknown_row: LedgerState | None
    ) -> None:
        """The run stopped mid-create: record what may have happened (the write is queued
        at once, so it lands even if this wait is interrupted again)."""
        if self.ledger is None or unknown_row is not None:
            return
        if sent:
            await self.ledger.mark_unknown(key, "cancelled while creating")
        else:
            await self.ledger.mark_not_submitted(key, "cancelled before the create was sent")

    async def mark_refused(self, key: str, error: str, unknown_row: LedgerState | None) -> None:
        """The server refused before acting: ``not_submitted`` (an unknown row stays unknown)."""
        if self.ledger is None:
            return
        if unknown_row is None:
            await self.ledger.mark_not_submitted(key, error)
        else:
            await self.ledger.mark_unknown(key, f"resubmission refused: {error}")

    def not_submitted(
        self, index: int, key: str, error: BaseException, unknown_row: LedgerState | None
    ) -> BulkResult:
        """No job was created now; an earlier unknown create keeps the input ``UNKNOWN``."""
        outcome = BulkOutcome.NOT_SUBMITTED if unknown_row is None else BulkOutcome.UNKNOWN
        return BulkResult(index, key, outcome, error=error, resumed=unknown_row is not None)

    def quota_result(self, index: int, key: str, unknown_row: LedgerState | None) -> BulkResult:
        error = QuotaExceededError(f"input {index} not submitted: {self.quota_error}")
        return self.not_submitted(index, key, error, unknown_row)

    # -- following a job: wait, then download --------------------------------------------------

    async def follow(
        self, index: int, key: str, handle: JobHandle, entry: LedgerEntry | None
    ) -> None:
        """Wait for one job and download its outputs; emit its result."""
        try:
            result = await self.finish_item(index, key, handle, entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("following job %s of input %d failed unexpectedly", handle.id, index)
            result = BulkResult(index, key, BulkOutcome.SUBMITTED, handle, handle.job, error=exc)
        self.emit(result)

    async def finish_item(
        self, index: int, key: str, handle: JobHandle, entry: LedgerEntry | None
    ) -> BulkResult:
        resumed = entry is not None
        try:
            job = await self.wait_for(handle)
        except ChutesError as exc:  # timeout, job gone, server down: the ledger resumes it
            return BulkResult(
                index, key, BulkOutcome.SUBMITTED, handle, handle.job, error=exc, resumed=resumed
            )
        if self.ledger is not None and (entry is None or entry.state is _S.SUBMITTED):
            outcome = job.status or ("failed" if job.failed else "finished")
            await self.ledger.mark_finished(key, outcome=outcome, failed=job.failed)
        if job.failed:
            error = JobFailedError(job)
            return BulkResult(
                index, key, BulkOutcome.FAILED, handle, job, error=error, resumed=resumed
            )
        if self.options.download_to is None:
            return BulkResult(index, key, BulkOutcome.FINISHED, handle, job, resumed=resumed)
        return await self.download(index, key, handle, job, resumed)

    async def wait_for(self, handle: JobHandle) -> Job:
        """Poll one job until finished; at most ``poll_concurrency`` GETs are under way at once."""
        policy = self.options.poll
        loop = asyncio.get_running_loop()
        timeout = self.options.wait_timeout
        deadline = None if timeout is None else loop.time() + timeout
        interval: float | None = None
        previous = handle.job
        while True:
            async with self.poll_gate:
                job = await handle.refresh()
            if job.is_finished:
                return job
            if deadline is not None and loop.time() >= deadline:
                raise JobTimeoutError(handle.id, timeout or 0.0, job)
            changed = previous is None or _progress(job) != _progress(previous)
            interval = policy.next_interval(interval, changed=changed)
            previous = job
            await asyncio.sleep(policy.jittered(interval))

    async def download(
        self, index: int, key: str, handle: JobHandle, job: Job, resumed: bool
    ) -> BulkResult:
        assert self.options.download_to is not None
        dest = self.options.download_to / job.job_id
        try:
            async with self.download_gate:
                # overwrite: an earlier run (or attempt) may have left some files there
                paths = await handle.download_outputs(dest, overwrite=True)
        except (ChutesError, OSError, ExceptionGroup) as exc:  # the ledger keeps it "finished"
            return BulkResult(
                index, key, BulkOutcome.FINISHED, handle, job, error=exc, resumed=resumed
            )
        if self.ledger is not None:
            await self.ledger.mark_downloaded(key, {n: str(p) for n, p in paths.items()})
        return BulkResult(index, key, BulkOutcome.DOWNLOADED, handle, job, paths, resumed=resumed)

    # -- the whole run -----------------------------------------------------------------------

    async def main(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Feed, submit, follow; then tell the consumer the run is over."""
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
        for task in [*self.submitters, *self.followers]:
            if task not in self.creating:
                task.cancel()
        busy = [t for t in self.submitters if t in self.creating]
        if busy:
            log.info("stopping: %d create(s) under way get to finish", len(busy))
            _, late = await asyncio.wait(busy, timeout=self.options.cancel_grace)
            for task in late:
                task.cancel()
        for task in self.followers:  # none is started once stopping, but be sure
            task.cancel()
        await asyncio.gather(main, *self.submitters, *self.followers, return_exceptions=True)


def _resumed_result(index: int, entry: LedgerEntry, handle: JobHandle) -> BulkResult:
    """What the ledger already knows about an input, reported without asking the server."""
    key, state = entry.key, entry.state
    if state is _S.DOWNLOADED:
        paths = {name: Path(p) for name, p in (entry.paths or {}).items()}
        return BulkResult(index, key, BulkOutcome.DOWNLOADED, handle, paths=paths, resumed=True)
    if state is _S.FAILED:
        error = ChutesError(
            f"job {handle.id} finished as a failure in an earlier run ({entry.outcome})"
        )
        return BulkResult(index, key, BulkOutcome.FAILED, handle, error=error, resumed=True)
    outcome = BulkOutcome.FINISHED if state is _S.FINISHED else BulkOutcome.SUBMITTED
    return BulkResult(index, key, outcome, handle, resumed=True)


def _progress(job: Job) -> tuple[Any, ...]:
    """What polling watches for a change (``last_queried_at`` changes on every read)."""
    return (job.state, job.updated_at, job.instance_id, job.finished_at)


def _create_may_have_happened(exc: ChutesError) -> bool:
    """Whether a failed create may still have created (and billed) a job."""
    if isinstance(exc, TransportError):
        return not exc.connect_failed
    if isinstance(exc, ProtocolError):
        return True  # a 2xx whose body could not be read: the job exists
    if isinstance(exc, ServerError):
        return exc.status != 503
    return not isinstance(exc, APIStatusError | ConfigurationError)


def _options(
    chute_id: str,
    method: str,
    *,
    concurrency: int,
    wait: bool,
    download_to: str | PathLike[str] | None,
    key: Callable[[Mapping[str, Any]], str] | None,
    disk_gb: float | None,
    poll: PollPolicy | None,
    poll_concurrency: int | None,
    download_concurrency: int,
    wait_timeout: float | None,
    resubmit_unknown: bool,
    max_in_flight: int | None,
    cancel_grace: float,
) -> BulkOptions:
    """Check the settings and fill in the defaults."""
    waits = wait or download_to is not None
    if max_in_flight is None:
        ahead = concurrency * READ_AHEAD_PER_SUBMITTER
        max_in_flight = max(DEFAULT_MAX_IN_FLIGHT_WAITING, ahead) if waits else ahead
    poll_concurrency = poll_concurrency or concurrency
    for name, value in (
        ("concurrency", concurrency),
        ("poll_concurrency", poll_concurrency),
        ("download_concurrency", download_concurrency),
        ("max_in_flight", max_in_flight),
    ):
        if value < 1:
            raise ConfigurationError(f"{name} must be at least 1, got {value}")
    return BulkOptions(
        chute_id=chute_id,
        method=method,
        concurrency=concurrency,
        wait=wait,
        download_to=Path(download_to) if download_to is not None else None,
        key=key or input_key,
        disk_gb=disk_gb,
        poll=poll or PollPolicy(),
        poll_concurrency=poll_concurrency,
        download_concurrency=download_concurrency,
        wait_timeout=wait_timeout,
        resubmit_unknown=resubmit_unknown,
        max_in_flight=max_in_flight,
        cancel_grace=cancel_grace,
    )


async def submit_many(
    session: ChutesSession,
    chute_id: str,
    method: str,
    inputs: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int = 32,
    wait: bool = False,
    download_to: str | PathLike[str] | None = None,
    ledger: str | PathLike[str] | None = None,
    key: Callable[[Mapping[str, Any]], str] | None = None,
    disk_gb: float | None = None,
    poll: PollPolicy | None = None,
    poll_concurrency: int | None = None,
    download_concurrency: int = 4,
    wait_timeout: float | None = None,
    resubmit_unknown: bool = False,
    max_in_flight: int | None = None,
    cancel_grace: float = DEFAULT_CANCEL_GRACE,
) -> AsyncGenerator[BulkResult, None]:
    """Create one job per input and yield a :class:`BulkResult` per input as each completes.

    See :meth:`ChutesSession.submit_many` for the arguments.
    """
    options = _options(
        chute_id, method, concurrency=concurrency, wait=wait, download_to=download_to, key=key,
        disk_gb=disk_gb, poll=poll, poll_concurrency=poll_concurrency,
        download_concurrency=download_concurrency, wait_timeout=wait_timeout,
        resubmit_unknown=resubmit_unknown, max_in_flight=max_in_flight, cancel_grace=cancel_grace,
    )  # fmt: skip
    opened = await Ledger.open(ledger) if ledger is not None else None
    run = BulkRun(session, options, opened)
    main = asyncio.create_task(run.main(inputs))
    try:
        while (result := await run.results.get()) is not None:
            run.in_flight.release()
            yield result
        await main
        if run.input_error is not None:
            raise run.input_error
    finally:
        await _shut_down(run, main, opened)


async def _shut_down(run: BulkRun, main: asyncio.Task[None], ledger: Ledger | None) -> None:
    """Stop the run and close the ledger, even if the caller is cancelled again meanwhile."""

    async def shut_down() -> None:
        try:
            if not main.done():
                await run.stop(main)
        finally:
            if ledger is not None:
                await ledger.close()

    await asyncio.shield(asyncio.ensure_future(shut_down()))
