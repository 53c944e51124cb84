"""Creating one input's job in a ``submit_many`` run, or resuming it from the ledger.

A create is billed and not idempotent: every step is recorded in the ledger before the next
(``creating`` before the POST, its outcome after), so a re-run never creates a job twice, and
a create whose answer was lost is recorded ``unknown`` rather than sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from ..errors import (
    ChutesError,
    LeaseLostError,
    LedgerError,
    QuotaExceededError,
    RateLimitError,
    UnknownCreateError,
)
from ..job import JobHandle, create_job
from ..retry import create_may_have_acted
from .gate import RateGate
from .ledger import LedgerEntry, LedgerState, LedgerStore
from .options import BulkOptions
from .result import BulkOutcome, BulkResult

if TYPE_CHECKING:
    from .._http import Transport

log = logging.getLogger("chutes_jobs")

#: How many times one input may be refused by a (non-quota) 429 before it is reported.
MAX_RATE_LIMITED = 20

_S = LedgerState

#: What a create attempt came to: the job's handle, a final result, or None for "try again".
_Created: TypeAlias = "JobHandle | BulkResult | None"


class JobCreator:
    """Creates (or finds in the ledger) the job of each input, behind the group's rate gate."""

    def __init__(self, session: Transport, options: BulkOptions, ledger: LedgerStore | None):
        self.session = session
        self.options = options
        self.ledger = ledger
        self.rate_gate = RateGate()
        #: Submitters inside a create (ledger mark, POST, ledger outcome): not cancelled at once.
        self.creating: set[asyncio.Task[Any]] = set()
        # 429s are handled here, as a group, not by each request's own retry loop.
        self.create_policy = attrs.evolve(session.retry_policy, retry_rate_limits=False)

    async def create_or_resume(
        self, index: int, key: str, args: Mapping[str, Any], entry: LedgerEntry | None
    ) -> JobHandle | BulkResult:
        """The job's handle (created now or found in the ledger ``entry``), or a final result.

        A failure that escapes (the ledger broke) is reported UNKNOWN, since it may have
        struck after the create was sent.
        """
        try:
            return await self._submit_or_resume(index, key, args, entry)
        except LeaseLostError as exc:  # refused before anything was sent
            return BulkResult(index, key, BulkOutcome.NOT_SUBMITTED, error=exc)
        except (ChutesError, OSError) as exc:
            log.error("input %d: %s", index, exc)
            return BulkResult(index, key, BulkOutcome.UNKNOWN, error=exc)

    @property
    def open(self) -> bool:
        """Whether a create could be sent right now (no pause in force, quota not reached)."""
        return self.rate_gate.quota_error is None and not self.rate_gate.paused

    async def begin(
        self, index: int, key: str, args: Mapping[str, Any]
    ) -> tuple[JobHandle | BulkResult, LedgerEntry | None]:
        """:meth:`create_or_resume` for an input the ledger was not asked about yet, and the
        entry the ledger held for it: one ledger call marks it ``creating`` when it is new
        (else returns what the ledger holds), instead of a read and then a write. Use it
        while the gate is :attr:`open`."""
        assert self.ledger is not None
        try:
            entry = await self._begin_create(index, key)
        except (ChutesError, OSError) as exc:  # nothing was sent
            log.error("input %d: %s", index, exc)
            return BulkResult(index, key, BulkOutcome.NOT_SUBMITTED, error=exc), None
        if entry is not None:
            return await self.create_or_resume(index, key, args, entry), entry
        try:
            return await self.submit(index, key, args, premarked=True), None
        except (ChutesError, OSError) as exc:
            log.error("input %d: %s", index, exc)
            return BulkResult(index, key, BulkOutcome.UNKNOWN, error=exc), None

    async def _begin_create(self, index: int, key: str) -> LedgerEntry | None:
        """``ledger.begin_create``, counted as a create under way; cancelled, a mark it made
        is turned into ``not_submitted`` (nothing was sent)."""
        assert self.ledger is not None
        task = asyncio.current_task()
        assert task is not None
        self.creating.add(task)
        marking = asyncio.ensure_future(self.ledger.begin_create(key, index))
        try:
            return await asyncio.shield(marking)
        except asyncio.CancelledError:
            if await marking is None:
                await self.ledger.mark_not_submitted(key, "cancelled before the create was sent")
            raise
        finally:
            self.creating.discard(task)

    async def _submit_or_resume(
        self, index: int, key: str, args: Mapping[str, Any], entry: LedgerEntry | None
    ) -> JobHandle | BulkResult:
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
        handle = JobHandle(self.session, entry.job_id)
        if self.options.waits and state is not _S.DOWNLOADED:
            return handle
        return _resumed_result(index, entry, handle)

    async def submit(
        self,
        index: int,
        key: str,
        args: Mapping[str, Any],
        *,
        unknown_row: LedgerState | None = None,
        premarked: bool = False,
    ) -> JobHandle | BulkResult:
        """Create the job, pausing with the group on 429s; stop at the daily quota.

        ``premarked``: the ledger already holds this input ``creating`` (:meth:`begin`).
        """
        refusals = 0
        while True:
            if not premarked:
                if self.rate_gate.quota_error is not None:
                    return self.quota_result(index, key, unknown_row)
                await self.rate_gate.wait()
            created = await self._create_as_busy(index, key, args, unknown_row, premarked)
            premarked = False  # a refused create was recorded not_submitted: mark it again
            if created is not None:
                return created
            refusals += 1
            if refusals >= MAX_RATE_LIMITED:
                assert self.rate_gate.last_rate_limit is not None
                return self.not_submitted(index, key, self.rate_gate.last_rate_limit, unknown_row)
            if unknown_row is _S.CREATING:
                unknown_row = _S.UNKNOWN  # create_once re-marked it

    async def _create_as_busy(
        self,
        index: int,
        key: str,
        args: Mapping[str, Any],
        unknown_row: LedgerState | None,
        premarked: bool = False,
    ) -> _Created:
        """:meth:`create_once`, with the current task counted in :attr:`creating`."""
        task = asyncio.current_task()
        assert task is not None
        self.creating.add(task)
        try:
            return await self.create_once(index, key, args, unknown_row, premarked)
        finally:
            self.creating.discard(task)

    async def create_once(
        self,
        index: int,
        key: str,
        args: Mapping[str, Any],
        unknown_row: LedgerState | None,
        premarked: bool = False,
    ) -> _Created:
        """One create, recorded before (``creating``, unless ``premarked``) and after (its
        outcome) in the ledger.

        A row already ``unknown`` (resubmitted on request) stays ``unknown`` until a create
        answers with a job: the earlier create may still exist.
        """
        sent = False
        try:
            if not premarked:
                await self.mark_before_create(index, key, unknown_row)
            await self.rate_gate.wait()  # a pause may have begun during the ledger write
            if self.rate_gate.quota_error is not None:
                await self.mark_refused(key, str(self.rate_gate.quota_error), unknown_row)
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
            await self.on_create_cancelled(key, sent, unknown_row)
            raise
        except RateLimitError as exc:
            return await self.on_rate_limited(index, key, exc, unknown_row)
        except LedgerError as exc:
            if sent:
                raise
            # the ledger refused the mark (another process claimed or cancelled it): not sent
            level = logging.INFO if isinstance(exc, LeaseLostError) else logging.WARNING
            log.log(level, "input %d not submitted: %s", index, exc)
            return self.not_submitted(index, key, exc, unknown_row)
        except ChutesError as exc:
            if not sent:
                raise
            return await self.on_create_failed(index, key, exc, unknown_row)
        self.rate_gate.created()
        if self.options.on_job is not None and handle.job is not None:
            self.options.on_job(handle.job)
        return await self.on_created(index, key, handle)

    # -- ledger transitions around a create ---------------------------------------------------

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
        """Record the new job; a ledger that cannot say so is reported with the job."""
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
        """Record the refusal; at the daily quota the input is done, else try again."""
        await self.mark_refused(key, str(exc), unknown_row)
        self.rate_gate.rate_limited(exc, self.create_policy)
        if exc.is_quota:
            return self.quota_result(index, key, unknown_row)
        return None

    async def on_create_failed(
        self, index: int, key: str, exc: ChutesError, unknown_row: LedgerState | None
    ) -> BulkResult:
        """Record a failed create: ``unknown`` if a job may exist, else refused."""
        if create_may_have_acted(exc):
            if self.ledger is not None:
                await self.ledger.mark_unknown(key, str(exc))
            error = UnknownCreateError(f"input {index}: create outcome unknown ({exc})")
            error.__cause__ = exc
            return BulkResult(index, key, BulkOutcome.UNKNOWN, error=error)
        await self.mark_refused(key, str(exc), unknown_row)
        return self.not_submitted(index, key, exc, unknown_row)

    async def on_create_cancelled(
        self, key: str, sent: bool, unknown_row: LedgerState | None
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

    # -- results without a job ------------------------------------------------------------------

    def not_submitted(
        self, index: int, key: str, error: BaseException, unknown_row: LedgerState | None
    ) -> BulkResult:
        """No job was created now; an earlier unknown create keeps the input ``UNKNOWN``."""
        outcome = BulkOutcome.NOT_SUBMITTED if unknown_row is None else BulkOutcome.UNKNOWN
        return BulkResult(index, key, outcome, error=error, resumed=unknown_row is not None)

    def quota_result(self, index: int, key: str, unknown_row: LedgerState | None) -> BulkResult:
        """Not submitted: the daily quota is exhausted."""
        error = QuotaExceededError(f"input {index} not submitted: {self.rate_gate.quota_error}")
        return self.not_submitted(index, key, error, unknown_row)


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
