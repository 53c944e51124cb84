"""The states of a ledger row (:class:`LedgerState`), apart from the ledger itself.

Kept out of :mod:`chutes_jobs.bulk.ledger` so the command line can offer them as choices
(``ledger ls --state``) without loading a ledger backend at start-up.
"""

from __future__ import annotations

import enum

__all__ = ["LedgerState"]


class LedgerState(enum.StrEnum):
    """What the ledger knows about one input key."""

    TODO = "todo"  #: loaded into a shared ledger, not created yet
    CREATING = "creating"  #: written before the create request is sent
    SUBMITTED = "submitted"  #: the job id is known
    UNKNOWN = "unknown"  #: the create may have reached the server, but no answer came
    FINISHED = "finished"  #: the job finished; its outcome is recorded
    FAILED = "failed"  #: the job finished as a failure
    DOWNLOADED = "downloaded"  #: the outputs are on disk; their paths are recorded
    NOT_SUBMITTED = "not_submitted"  #: the create was refused before acting; may be retried
    CANCELLED = "cancelled"  #: ``chutes-jobs ledger cancel``: deleted, or never to be created
