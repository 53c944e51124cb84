"""Helpers for the ledger tests: which SQLite writer a test's ledgers use."""

from __future__ import annotations

from typing import Any

import pytest


def use_sqlite_writer(monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    """Make ``writer`` the default of every SQLite ledger opened from now on."""
    from chutes_jobs.bulk.ledger.sqlite import SqliteLedger

    opened = SqliteLedger.open.__func__  # type: ignore[attr-defined]

    async def open_with_writer(cls: type[SqliteLedger], /, path: Any, **options: Any) -> Any:
        options.setdefault("writer", writer)
        return await opened(cls, path, **options)

    monkeypatch.setattr(SqliteLedger, "open", classmethod(open_with_writer))
