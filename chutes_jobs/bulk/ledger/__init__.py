"""The ledger of a ``submit_many`` run: its interface (:mod:`.base`) and its backends.

:class:`Ledger` is the SQLite backend (:mod:`.sqlite`), the one ``submit_many(ledger=path)``
opens. A second backend (PostgreSQL, say) is one more module implementing
:class:`~.base.LedgerStore` with :func:`~.base.check_transition`.
"""

from __future__ import annotations

from .base import LedgerEntry, LedgerError, LedgerState, LedgerStore, check_transition
from .sqlite import SCHEMA_VERSION, Ledger

__all__ = [
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerState",
    "LedgerStore",
    "check_transition",
]
