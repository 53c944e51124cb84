"""The ledger of a ``submit_many`` run: its interface (:mod:`.base`) and its backends.

``await Ledger.open(target)`` opens a SQLite file (:mod:`.sqlite`, one process's, the default)
or, for a ``postgresql://`` URL, a ledger many processes share (:mod:`.postgres`, extra
``chutes-jobs[postgres]``). Both implement :class:`~.base.Ledger` and check every write with
:func:`~.base.check_transition`.
"""

from __future__ import annotations

from .base import (
    Claimed,
    Lease,
    Ledger,
    LedgerEntry,
    LedgerError,
    LedgerState,
    LedgerStore,
    LedgerSummary,
    Pause,
    SharedLedger,
    WorkRule,
    check_transition,
    is_shared_url,
)
from .sqlite import SCHEMA_VERSION, SqliteLedger

__all__ = [
    "SCHEMA_VERSION",
    "Claimed",
    "Lease",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerState",
    "LedgerStore",
    "LedgerSummary",
    "Pause",
    "SharedLedger",
    "SqliteLedger",
    "WorkRule",
    "check_transition",
    "is_shared_url",
]
