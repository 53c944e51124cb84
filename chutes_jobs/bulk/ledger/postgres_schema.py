"""The shared ledger's tables, and their versioned migration.

Every table is prefixed ``chutes_jobs_`` so a batch can live in a database that holds other
things. :func:`migrate` runs in one transaction under a transaction-scoped advisory lock
(``pg_advisory_xact_lock``): two processes starting at once take turns, the second finds the
schema current and changes nothing. Each migration step runs once, in order; a database written
by a newer chutes-jobs is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import LedgerError
from .base import LedgerState

if TYPE_CHECKING:
    import psycopg

__all__ = ["LEDGER", "META", "PAUSE", "SCHEMA_VERSION", "check_current", "migrate"]

#: The version of the shared ledger's tables; an older database is migrated, a newer refused.
SCHEMA_VERSION = 1

META = "chutes_jobs_meta"
LEDGER = "chutes_jobs_ledger"
PAUSE = "chutes_jobs_pause"

#: Any 64-bit constant unique to this library: the advisory lock migrations take turns on.
_MIGRATION_LOCK = 0x63_68_75_74_65_73_6A_62  # b"chutesjb"

_STATES = ", ".join(f"'{s.value}'" for s in LedgerState)
#: States a run may still work on: the claim index covers only these rows.
_OPEN = "'todo', 'creating', 'not_submitted', 'unknown', 'submitted', 'finished'"

#: Version -> the statements that bring version - 1 to it.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"""CREATE TABLE {LEDGER} (
            key text PRIMARY KEY,
            input_index bigint NOT NULL,
            args text NULL,
            state text NOT NULL CONSTRAINT {LEDGER}_state CHECK (state IN ({_STATES})),
            job_id text NULL,
            outcome text NULL,
            error text NULL,
            paths text NULL,
            owner text NULL,
            lease_until timestamptz NULL,
            updated_at double precision NOT NULL
        )""",
        f"CREATE INDEX {LEDGER}_open ON {LEDGER} (input_index) WHERE state IN ({_OPEN})",
        f"CREATE INDEX {LEDGER}_held ON {LEDGER} (owner) WHERE lease_until IS NOT NULL",
        f"CREATE INDEX {LEDGER}_state ON {LEDGER} (state)",
        f"""CREATE TABLE {PAUSE} (
            id int PRIMARY KEY CHECK (id = 1),
            resume_at timestamptz NOT NULL,
            quota text NULL,
            quota_at timestamptz NULL,
            updated_by text NULL
        )""",
        f"INSERT INTO {PAUSE} (id, resume_at) VALUES (1, 'epoch')",
    ),
}


async def migrate(conn: psycopg.AsyncConnection[tuple[object, ...]], location: str) -> int:
    """Create or bring up to date the ledger's tables; the version found before (0: none).

    Raises :class:`LedgerError` when the database holds a newer schema version.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {META} (name text PRIMARY KEY, value text NOT NULL)"
        )
        cursor = await conn.execute(f"SELECT value FROM {META} WHERE name = 'schema_version'")
        row = await cursor.fetchone()
        found = int(str(row[0])) if row is not None else 0
        if found > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {location} has schema version {found}, this chutes-jobs reads version "
                f"{SCHEMA_VERSION}: upgrade chutes-jobs on this machine"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                await conn.execute(statement)
        await conn.execute(
            f"INSERT INTO {META} VALUES ('schema_version', %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return found


async def check_current(conn: psycopg.AsyncConnection[tuple[object, ...]], location: str) -> None:
    """Check, creating and changing nothing (a read-only role may run it), that the database
    holds a ledger of this version; :class:`LedgerError` saying what it holds otherwise."""
    cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (META,))
    row = await cursor.fetchone()
    if row is None or not row[0]:
        raise LedgerError(f"no chutes-jobs ledger in {location} (no table {META})")
    cursor = await conn.execute(f"SELECT value FROM {META} WHERE name = 'schema_version'")
    row = await cursor.fetchone()
    found = int(str(row[0])) if row is not None else 0
    if found != SCHEMA_VERSION:
        raise LedgerError(
            f"ledger {location} has schema version {found}, this chutes-jobs reads version "
            f"{SCHEMA_VERSION}: "
            + ("upgrade chutes-jobs on this machine" if found > SCHEMA_VERSION else
               "a run (chutes-jobs bulk, submit_many) brings it up to date")
        )  # fmt: skip
