"""``submit_many``: thousands of jobs with bounded concurrency, group rate limiting and a ledger.

Inputs are consumed lazily. Each input gets a key (the caller's function of it, or the sha256
of its canonical JSON); with a ledger, every step of every key is written durably before the
next one, so a re-run skips what was submitted, resumes waiting and downloading, and never
creates a job twice. A create whose answer was lost is recorded as ``unknown`` and reported,
never re-sent unless ``resubmit_unknown=True``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from .ledger import Ledger, LedgerEntry, LedgerState
from .models import Job
from .polling import PollPolicy

if TYPE_CHECKING:
    from .session import ChutesSession

__all__ = ["BulkOutcome", "BulkResult", "QuotaExceededError", "UnknownCreateError", "input_key"]

log = logging.getLogger("chutes_jobs")

#: Inputs being worked on at once (submitted and not yet reported) when waiting for results.
DEFAULT_MAX_IN_FLIGHT = 4096


class BulkOutcome(enum.Enum):
    """Where one input of a batch ended up."""

    SUBMITTED = "submitted"  # created (not waited for)
    FINISHED = "finished"  # created, waited, finished successfully
    FAILED = "failed"  # created, finished as a failure
    DOWNLOADED = "downloaded"  # finished and its outputs are on disk
    NOT_SUBMITTED = "not_submitted"  # no job was created for it (refused, quota, bad input)
    UNKNOWN = "unknown"  # the create may or may not have reached the server


class QuotaExceededError(ChutesError):
    """The daily job quota is exhausted: this input was not submitted."""


class UnknownCreateError(ChutesError):
    """A create's answer was lost: a job may exist (and be billed) for this input.

    It is never re-sent on its own; pass ``resubmit_unknown=True`` once you have checked.
    """


@attrs.frozen
class BulkResult:
    """One input's result, yielded by :meth:`ChutesSession.submit_many` in completion order."""

    index: int
    key: str
    outcome: BulkOutcome
    handle: JobHandle | None = None
    job: Job | None = None
    paths: Mapping[str, Path] | None = None
    error: BaseException | None = None
    #: True when the ledger already had this input from an earlier run.
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing went wrong for this input."""
        return self.error is None


def input_key(args: Mapping[str, Any]) -> str:
    """The default key of an input: sha256 of its canonical JSON (sorted keys, compact)."""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RateGate:
    """One pause shared by every submitter: a 429 stops them all until its Retry-After."""

    def __init__(self) -> None:
        self._resume_at = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every submitter for ``seconds`` from now (never shortens a longer pause)."""
        now = asyncio.get_running_loop().time()
        self._resume_at = max(self._resume_at, now + seconds)

    async def wait(self) -> None:
        """Return once no pause is in force."""
        loop = asyncio.get_running_loop()
        while (remaining := self._resume_at - loop.time()) > 0:
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

    @property
    def waits(self) -> bool:
        return self.wait or self.download_to is not None


async def _aiter(inputs: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(inputs, AsyncIterable):
        async for item in inputs:
            yield item
    else:
        for item in inputs:
            yield item


class BulkRun:
    """The machinery of one ``submit_many`` call: gates, ledger, tasks and the result queue."""

    def __init__(self, session: ChutesSession, options: BulkOptions, ledger: Ledger | None):
        self.session = session
        self.options = options
        self.ledger = ledger
        self.rate_gate = RateGate()
        self.submit_gate = asyncio.Semaphore(options.concurrency)
        self.poll_gate = asyncio.Semaphore(options.poll_concurrency)
        self.download_gate = asyncio.Semaphore(options.download_concurrency)
        self.in_flight = asyncio.Semaphore(options.max_in_flight)
        self.quota_error: RateLimitError | None = None
        self.results: asyncio.Queue[BulkResult | None] = asyncio.Queue()
        self.creates: set[asyncio.Future[Any]] = set()
        # 429s are handled here, as a group, not by each request's own retry loop.
        self.create_policy = attrs.evolve(session.retry_policy, retry_rate_limits=False)

    # -- the producer ------------------------------------------------------------------------

    async def feed(
        self, inputs: Iterable[Any] | AsyncIterable[Any], group: asyncio.TaskGroup
    ) -> None:
        """Read inputs lazily, one task each, at most ``max_in_flight`` at once."""
        index = 0
        async for args in _aiter(inputs):
            await self.in_flight.acquire()
            group.create_task(self.process(index, args))
            index += 1

    async def process(self, index: int, args: Any) -> None:
        try:
            result = await self.one(index, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one item never sinks the batch
            log.exception("input %d failed unexpectedly", index)
            result = BulkResult(index, "", BulkOutcome.NOT_SUBMITTED, error=exc)
        self.results.put_nowait(result)
        self.in_flight.release()

    # -- one input ---------------------------------------------------------------------------

    async def one(self, index: int, args: Any) -> BulkResult:
        if not isinstance(args, Mapping):
            error = ConfigurationError(f"input {index} is not a mapping of job arguments")
            return BulkResult(index, "", BulkOutcome.NOT_SUBMITTED, error=error)
        key = self.options.key(args)
        entry = await self.ledger.get(key) if self.ledger else None
        resumed = entry is not None
        handle, early = await self.submit_or_resume(index, key, args, entry)
        if early is not None:
            return early
        assert handle is not None
        if not self.options.waits:
            return BulkResult(
                index, key, BulkOutcome.SUBMITTED, handle, handle.job, resumed=resumed
            )
        return await self.finish_item(index, key, handle, entry, resumed)

    async def submit_or_resume(
        self, index: int, key: str, args: Mapping[str, Any], entry: LedgerEntry | None
    ) -> tuple[JobHandle | None, BulkResult | None]:
        """The job's handle (created now or found in the ledger), or an early final result."""
        state = entry.state if entry else None
        if entry is not None and entry.job_id and state not in (None, LedgerState.NOT_SUBMITTED):
            return self.session.job(entry.job_id), None
        if (
            state in (LedgerState.CREATING, LedgerState.UNKNOWN)
            and not self.options.resubmit_unknown
        ):
            error = UnknownCreateError(
                f"input {index}: an earlier create's answer was lost; a job may exist for it"
            )
            return None, BulkResult(index, key, BulkOutcome.UNKNOWN, error=error, resumed=True)
        return await self.submit(index, key, args)

    async def finish_item(
        self, index: int, key: str, handle: JobHandle, entry: LedgerEntry | None, resumed: bool
    ) -> BulkResult:
        if entry is not None and entry.state is LedgerState.DOWNLOADED:
            paths = {name: Path(p) for name, p in (entry.paths or {}).items()}
            return BulkResult(index, key, BulkOutcome.DOWNLOADED, handle, paths=paths, resumed=True)
        try:
            job = await self.wait_for(handle)
        except ChutesError as exc:
            return BulkResult(index, key, BulkOutcome.SUBMITTED, handle, handle.job, error=exc)
        if self.ledger:
            await self.ledger.mark_finished(
                key, outcome=job.status or "finished", failed=job.failed
            )
        if job.failed:
            error = JobFailedError(job)
            return BulkResult(
                index, key, BulkOutcome.FAILED, handle, job, error=error, resumed=resumed
            )
        if self.options.download_to is None:
            return BulkResult(index, key, BulkOutcome.FINISHED, handle, job, resumed=resumed)
        return await self.download(index, key, handle, job, resumed)

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self, index: int, key: str, args: Mapping[str, Any]
    ) -> tuple[JobHandle | None, BulkResult | None]:
        while True:
            if self.quota_error is not None:
                return None, self.quota_result(index, key)
            async with self.submit_gate:
                await self.rate_gate.wait()
                if self.quota_error is not None:
                    return None, self.quota_result(index, key)
                # Shielded: a create under way finishes and is recorded even if we are cancelled.
                create = asyncio.ensure_future(self.create_and_record(index, key, args))
                self.creates.add(create)
                create.add_done_callback(self.creates.discard)
                outcome = await asyncio.shield(create)
            if outcome is not None:
                return outcome

    async def create_and_record(
        self, index: int, key: str, args: Mapping[str, Any]
    ) -> tuple[JobHandle | None, BulkResult | None] | None:
        """One create: ledger ``creating`` → POST → ledger outcome. None means "try again"."""
        if self.ledger:
            await self.ledger.mark_creating(key, index)
        try:
            handle = await create_job(
                self.session,
                self.options.chute_id,
                self.options.method,
                args,
                disk_gb=self.options.disk_gb,
                retry_policy=self.create_policy,
            )
        except RateLimitError as exc:
            return await self.on_rate_limited(index, key, exc)
        except ChutesError as exc:
            return None, await self.on_create_failed(index, key, exc)
        if self.ledger:
            await self.ledger.mark_submitted(key, handle.id)
        return handle, None

    async def on_rate_limited(
        self, index: int, key: str, exc: RateLimitError
    ) -> tuple[JobHandle | None, BulkResult | None] | None:
        if self.ledger:
            await self.ledger.mark_not_submitted(key, str(exc))
        if exc.is_quota:
            if self.quota_error is None:
                log.warning("daily job quota exhausted; no further inputs are submitted")
            self.quota_error = exc
            return None, self.quota_result(index, key)
        pause = self.create_policy.backoff(exc.attempts or 1, exc)
        log.info("rate limited; every submitter pauses for %.2f s", pause)
        self.rate_gate.pause(pause)
        return None

    async def on_create_failed(self, index: int, key: str, exc: ChutesError) -> BulkResult:
        if _create_may_have_happened(exc):
            if self.ledger:
                await self.ledger.mark_unknown(key, str(exc))
            error = UnknownCreateError(f"input {index}: create outcome unknown ({exc})")
            error.__cause__ = exc
            return BulkResult(index, key, BulkOutcome.UNKNOWN, error=error)
        if self.ledger:
            await self.ledger.mark_not_submitted(key, str(exc))
        return BulkResult(index, key, BulkOutcome.NOT_SUBMITTED, error=exc)

    def quota_result(self, index: int, key: str) -> BulkResult:
        error = QuotaExceededError(f"input {index} not submitted: {self.quota_error}")
        return BulkResult(index, key, BulkOutcome.NOT_SUBMITTED, error=error)

    # -- waiting and downloading -------------------------------------------------------------

    async def wait_for(self, handle: JobHandle) -> Job:
        """Poll one job until finished; at most ``poll_concurrency`` GETs are under way at once."""
        policy = self.options.poll
        loop = asyncio.get_running_loop()
        deadline = (
            None if self.options.wait_timeout is None else loop.time() + self.options.wait_timeout
        )
        interval: float | None = None
        previous = handle.job
        while True:
            async with self.poll_gate:
                job = await handle.refresh()
            if job.is_finished:
                return job
            if deadline is not None and loop.time() >= deadline:
                raise JobTimeoutError(handle.id, self.options.wait_timeout or 0.0, job)
            interval = policy.next_interval(interval, changed=job != previous)
            previous = job
            await asyncio.sleep(policy.jittered(interval))

    async def download(
        self, index: int, key: str, handle: JobHandle, job: Job, resumed: bool
    ) -> BulkResult:
        assert self.options.download_to is not None
        dest = self.options.download_to / job.job_id
        try:
            async with self.download_gate:
                paths = await handle.download_outputs(dest, overwrite=resumed)
        except (ChutesError, OSError, ExceptionGroup) as exc:
            return BulkResult(index, key, BulkOutcome.FINISHED, handle, job, error=exc)
        if self.ledger:
            await self.ledger.mark_downloaded(key, {n: str(p) for n, p in paths.items()})
        return BulkResult(index, key, BulkOutcome.DOWNLOADED, handle, job, paths, resumed=resumed)

    # -- the whole run -----------------------------------------------------------------------

    async def drain_creates(self) -> None:
        """Let creates under way finish and be recorded (used when the run is cancelled)."""
        if self.creates:
            await asyncio.gather(*self.creates, return_exceptions=True)


def _create_may_have_happened(exc: ChutesError) -> bool:
    """Whether a failed create may still have created (and billed) a job."""
    if isinstance(exc, TransportError):
        return not exc.connect_failed
    if isinstance(exc, ProtocolError):
        return True  # a 2xx whose body could not be read: the job exists
    if isinstance(exc, ServerError):
        return exc.status != 503
    return not isinstance(exc, APIStatusError | ConfigurationError)


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
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> AsyncIterator[BulkResult]:
    """See :meth:`ChutesSession.submit_many`."""
    for name, value in (
        ("concurrency", concurrency),
        ("download_concurrency", download_concurrency),
        ("max_in_flight", max_in_flight),
    ):
        if value < 1:
            raise ConfigurationError(f"{name} must be at least 1, got {value}")
    options = BulkOptions(
        chute_id=chute_id,
        method=method,
        concurrency=concurrency,
        wait=wait,
        download_to=Path(download_to) if download_to is not None else None,
        key=key or input_key,
        disk_gb=disk_gb,
        poll=poll or PollPolicy(),
        poll_concurrency=poll_concurrency or concurrency,
        download_concurrency=download_concurrency,
        wait_timeout=wait_timeout,
        resubmit_unknown=resubmit_unknown,
        max_in_flight=max_in_flight,
    )
    opened = await Ledger.open(ledger) if ledger is not None else None
    try:
        run = BulkRun(session, options, opened)
        async for result in _run(run, inputs):
            yield result
    finally:
        if opened is not None:
            await opened.close()


async def _run(
    run: BulkRun, inputs: Iterable[Any] | AsyncIterable[Any]
) -> AsyncIterator[BulkResult]:
    """Run the batch in a background task group and yield its results as they come."""

    async def main() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                await run.feed(inputs, group)
        finally:
            run.results.put_nowait(None)

    runner = asyncio.ensure_future(main())
    try:
        while (result := await run.results.get()) is not None:
            yield result
        await runner  # surfaces an error of the input iterable itself
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        await run.drain_creates()
