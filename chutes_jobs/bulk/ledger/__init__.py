"""The ledger of a ``submit_many`` run: its interface (:mod:`.base`) and its backends.

``await Ledger.open(target)`` opens a SQLite file (:mod:`.sqlite`, one process's, the default)
or, for a ``postgresql://`` URL, a ledger many processes share (:mod:`.postgres`, extra
``chutes-jobs[postgres]``). Both implement :class:`~.base.Ledger` and check every write with
:func:`~.base.check_transition`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .sqlite import SCHEMA_VERSION, SqliteLedger


def __getattr__(name: str) -> Any:
    # The SQLite backend (sqlite3, its writer) loads on first use: the CLI's `ledger` commands
    # are registered at start-up, and `chutes-jobs status` must not pay for it.
    if name in ("SCHEMA_VERSION", "SqliteLedger"):
        from . import sqlite

        return getattr(sqlite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
