"""What a ledger target may be: a SQLite file path or a ``postgresql://`` URL, and the options
each backend takes (:meth:`.base.Ledger.open` checks them before opening anything)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from ..._redact import redact_url
from ...errors import LedgerError

__all__ = ["check_options", "checked_max_batch", "is_shared_url", "refused_target"]


def is_shared_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a shared (PostgreSQL) ledger rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")


def refused_target(target: str | os.PathLike[str]) -> str | None:
    """Why ``target`` is no ledger (None: a file path or a ``postgresql://`` URL): a URL of
    another scheme (``mysql://``, ``sqlite://``, ``POSTGRES://``...) or an empty string. The
    message shows the URL with its password masked."""
    if not isinstance(target, str) or is_shared_url(target):
        return None
    if not target:
        return "the ledger is an empty string: give a SQLite file path or a postgresql:// URL"
    if (scheme := _URL_SCHEME.match(target)) is None:
        return None
    return (
        f"ledger {redact_url(target)}: {scheme.group(1)}:// is not a ledger URL: give a "
        "SQLite file path, or a postgresql:// (or postgres://) URL"
    )


#: The options :meth:`Ledger.open` passes on, per backend.
_OPTIONS = {
    "sqlite": frozenset({"max_batch", "create", "writer"}),
    "postgresql": frozenset({"max_batch", "lease", "create"}),
}


_ONLY = {
    "lease": "lease applies only to postgresql:// ledgers",
    "writer": "writer applies only to SQLite ledgers",
}


def check_options(backend: str, options: Mapping[str, Any]) -> None:
    """:class:`LedgerError` for an option ``backend`` does not take (each backend's ``open``
    checks the values of those it takes)."""
    for name in sorted(set(options) - _OPTIONS[backend]):
        shown = _ONLY.get(name, "unknown")
        raise LedgerError(f"ledger option {name}={options[name]!r}: {shown}")


def checked_max_batch(batch: object) -> int:
    """``batch`` as a number of writes per transaction, or :class:`LedgerError`."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise LedgerError(f"ledger option max_batch={batch!r}: must be a whole number >= 1")
    return batch
