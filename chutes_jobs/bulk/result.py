"""What ``submit_many`` yields: one :class:`BulkResult` per input (its errors: ``errors.py``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path

import attrs

from ..job import JobHandle
from ..models import Job

__all__ = ["BulkOutcome", "BulkResult"]


class BulkOutcome(enum.Enum):
    """Where one input of a batch ended up."""

    SUBMITTED = "submitted"  #: created (not waited for, or the wait failed: see ``error``)
    #: created, waited, finished and not failed: ``job.outcome`` is ``SUCCEEDED``, or
    #: ``UNKNOWN`` when nothing says how it ended
    FINISHED = "finished"
    FAILED = "failed"  #: created, finished with ``job.outcome`` ``FAILED`` (``JobFailedError``)
    DOWNLOADED = "downloaded"  #: finished and its outputs are on disk
    NOT_SUBMITTED = "not_submitted"  #: no job was created for it (refused, quota, bad input)
    UNKNOWN = "unknown"  #: the create may or may not have reached the server


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
