"""Cancelling a batch from its ledger: delete every created job not finished, record it.

The API has no list endpoint, so the ledger is the only record of which jobs a batch created.
:func:`cancel_batch` reads it: each ``submitted`` job is looked up first (a job that finished
meanwhile is recorded ``finished``/``failed`` and kept: deleting it would delete its outputs),
the others are deleted and recorded ``cancelled``; inputs not created yet (``todo``,
``not_submitted``) are recorded ``cancelled`` so no process of a shared batch creates them.
Rows ``creating`` (a create under way) or ``unknown`` (no job id) cannot be cancelled: they are
counted, and a later ``cancel`` takes what they became.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import attrs

from ..errors import ChutesError, LedgerError, NotFoundError
from ..job import JobHandle
from ..models import JobState
from .ledger import Ledger, LedgerEntry, LedgerState

if TYPE_CHECKING:
    from .._http import Transport

__all__ = ["CancelReport", "cancel_batch"]

log = logging.getLogger("chutes_jobs")

_S = LedgerState
#: The note recorded with each cancelled row.
DELETED = "deleted by cancel"
NOT_CREATED = "cancelled before it was created"


@attrs.define
class CancelReport:
    """What :func:`cancel_batch` did, by input key.

    ``deleted``: jobs deleted (or found gone); ``finished``: jobs found finished, kept and
    recorded; ``not_created``: inputs that will not be created; ``failed``: ``{key: error}``
    for jobs that could not be deleted or recorded; ``left``: rows that could not be
    cancelled (``creating``, ``unknown``) by state.
    """

    deleted: list[str] = attrs.field(factory=list)
    finished: list[str] = attrs.field(factory=list)
    not_created: list[str] = attrs.field(factory=list)
    failed: dict[str, str] = attrs.field(factory=dict)
    left: dict[LedgerState, int] = attrs.field(factory=dict)


async def cancel_batch(session: Transport, ledger: Ledger, *, concurrency: int = 8) -> CancelReport:
    """Delete every job of ``ledger``'s batch that is not finished, and record it there.

    Returns a :class:`CancelReport`; a job that cannot be deleted is listed in ``failed`` (the
    others go on). Raises :class:`LedgerError` when the ledger itself cannot be read.
    """
    report = CancelReport()
    for entry in [*await ledger.entries(_S.TODO), *await ledger.entries(_S.NOT_SUBMITTED)]:
        try:
            await ledger.mark_cancelled(entry.key, NOT_CREATED)
            report.not_created.append(entry.key)
        except LedgerError as exc:  # claimed and created meanwhile: the next cancel sees it
            report.failed[entry.key] = str(exc)
    gate = asyncio.Semaphore(concurrency)

    async def one(entry: LedgerEntry) -> None:
        async with gate:
            await _cancel_job(session, ledger, entry, report)

    await asyncio.gather(*(one(e) for e in await ledger.entries(_S.SUBMITTED)))
    counts = await ledger.counts()
    report.left = {s: counts[s] for s in (_S.CREATING, _S.UNKNOWN) if counts[s]}
    return report


async def _cancel_job(
    session: Transport, ledger: Ledger, entry: LedgerEntry, report: CancelReport
) -> None:
    assert entry.job_id is not None
    handle = JobHandle(session, entry.job_id)
    try:
        try:
            job = await handle.refresh()
        except NotFoundError:
            job = None  # gone already: nothing to delete, record it
        if job is not None and job.state is JobState.FINISHED:
            outcome = job.status or ("failed" if job.failed else "finished")
            await ledger.mark_finished(entry.key, outcome=outcome, failed=job.failed)
            report.finished.append(entry.key)
            return
        if job is not None:
            await handle.delete()
        await ledger.mark_cancelled(entry.key, DELETED)
        report.deleted.append(entry.key)
    except ChutesError as exc:
        log.warning("input %d: job %s not cancelled: %s", entry.input_index, entry.job_id, exc)
        report.failed[entry.key] = str(exc)
