"""The shared ledger's writes: group-committed on one connection, one statement per batch.

Every ``mark_*`` is queued; one writer task takes everything pending and sends it as ONE
statement (one round trip, one commit): an ``INSERT ... ON CONFLICT DO UPDATE`` for the
``creating`` marks and an ``UPDATE ... FROM unnest(...)`` for the others, each row guarded by
its legal transition (built from :func:`.base.allowed_from` and :func:`.base.must_match`, as the
SQLite backend does), and the lease releases. Writes queued while a statement is under way
share the next one. A row the statement did not change was refused: it is read back and
:func:`.base.check_transition` says why, to that write's caller alone.

A write into ``creating`` from ``todo`` or ``not_submitted`` also needs the row to be claimed
by this process (the claim sets ``owner``): an input another process claimed since is refused
with :class:`LeaseLostError` and nothing is sent for it here. A deadlock with another process's
writer (rows locked in another order) rolls the statement back; it is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import attrs
import psycopg
from psycopg import errors as pg_errors

from ...errors import LeaseLostError, LedgerError
from .base import (
    LedgerEntry,
    LedgerState,
    allowed_from,
    entry_of,
    must_match,
    refusal,
)
from .postgres_schema import LEDGER

__all__ = ["ROW_COLUMNS", "PgWrite", "PgWriter"]

log = logging.getLogger("chutes_jobs")

_S = LedgerState
_Conn = psycopg.AsyncConnection[tuple[Any, ...]]
#: Columns a row is read with, in this order (``entry_of`` reads them).
ROW_COLUMNS = "key, input_index, state, job_id, outcome, error, paths, updated_at, owner"
#: States ``creating`` may come from that need the row to be claimed by this process.
_CLAIMED_FIRST = (_S.TODO, _S.NOT_SUBMITTED)
Answer = tuple[LedgerEntry | None, BaseException | None]


@attrs.define
class PgWrite:
    """One queued write: ``key`` becomes ``target`` with ``values``; its caller's future."""

    key: str
    target: LedgerState
    values: dict[str, Any]
    future: asyncio.Future[LedgerEntry | None]
    or_entry: bool = False  #: a refused write answers the row as it is, not an error
    release: bool = False  #: not a mark: give up the lease, state unchanged


@functools.cache
def _guard(target: LedgerState) -> tuple[str, str, bool, bool, bool]:
    """The per-row constants of a write into ``target``: its state; the states it may come
    from whatever the row holds (comma-separated); whether a row already in ``target`` may be
    re-marked, with its job id and/or outcome unchanged (:func:`must_match`)."""
    matched = must_match(target)
    assert set(matched) <= {"job_id", "outcome"}, "a new must-match column needs its SQL"
    before = [s for s in allowed_from(target) if s is not None]
    free = ",".join(sorted(s for s in before if s is not target or not matched))
    same = target in before and bool(matched)
    return str(target), free, same, "job_id" in matched, "outcome" in matched


def _arrays(marks: list[PgWrite], hold: Collection[LedgerState]) -> dict[str, list[Any]]:
    """The statement's per-row arrays for ``marks`` (one array per column of the statement)."""
    rows = []
    for w in marks:
        state, allowed, same, match_job, match_outcome = _guard(w.target)
        v = w.values
        rows.append((
            w.key, state, v.get("input_index", 0), v.get("job_id"), v.get("outcome"),
            v.get("error"), v.get("paths"), w.target in hold, allowed, same, match_job,
            match_outcome, "job_id" in v, "outcome" in v, "error" in v, "paths" in v,
        ))  # fmt: skip
    columns = zip(*rows, strict=True) if rows else [()] * len(_ARRAY_TYPES)
    return {name: list(values) for name, values in zip(_ARRAY_TYPES, columns, strict=True)}


def _refusal(before: LedgerEntry | None, write: PgWrite, owner: str) -> Answer:
    """What the caller of a write the statement refused gets: the row (``or_entry``), or the
    error saying why."""
    refused = refusal(before, write.key, write.target, write.values, or_entry=write.or_entry)
    if refused is not None:
        return refused
    if write.target is _S.CREATING and before is not None and before.state in _CLAIMED_FIRST:
        return None, LeaseLostError(
            f"ledger key {write.key!r} is claimed by {before.owner or 'no process'}, not by "
            f"this process ({owner}): not created here"
        )
    return None, LedgerError(f"ledger key {write.key!r} changed meanwhile; try again")


class PgWriter:
    """The queue of writes and the task committing them, on its own connection."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[_Conn]],
        owner: str,
        lease: float,
        location: str,
        max_batch: int = 1024,
    ) -> None:
        self._connect = connect
        self._owner = owner
        self._lease = lease
        self._location = location
        self._max_batch = max_batch
        self._conn: _Conn | None = None
        self._queue: list[PgWrite] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        #: States after a write into which this process keeps its lease on the row.
        self.hold: Collection[LedgerState] = frozenset({_S.CREATING})
        self.commits = 0

    def start(self, conn: _Conn) -> None:
        """Begin committing on ``conn``."""
        self._conn = conn
        self._task = asyncio.create_task(self._run(), name="chutes-jobs-ledger-writer")

    def submit(self, write: PgWrite) -> asyncio.Future[LedgerEntry | None]:
        """Queue ``write``; its future is answered once it is committed (or refused)."""
        if self._closing:
            raise LedgerError(f"ledger {self._location} is closed")
        self._queue.append(write)
        self._wake.set()
        return write.future

    async def close(self) -> None:
        """Commit everything queued, then close the connection."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._conn is not None:
            await self._conn.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = _distinct_prefix(self._queue[: self._max_batch])
                del self._queue[: len(batch)]
                try:
                    answers = await self._commit(batch)
                except Exception as exc:
                    # Not a database error (those are answered per write): a bug, or a
                    # warning turned into an error. Its callers learn it; the task goes on.
                    answers = [(None, self._unexpected(exc))] * len(batch)
                    await self._reconnect()
                _settle(batch, answers)
            if self._closing:
                return

    async def _commit(self, batch: list[PgWrite]) -> list[Answer]:
        for _ in range(5):
            try:
                return await self._statement(batch)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                continue  # rolled back: nothing of it happened, send it again
            except psycopg.Error as exc:
                await self._reconnect()
                error = LedgerError(f"ledger {self._location}: write failed: {exc}")
                return [(None, error)] * len(batch)
        error = LedgerError(f"ledger {self._location}: writes kept deadlocking")
        return [(None, error)] * len(batch)

    async def _statement(self, batch: list[PgWrite]) -> list[Answer]:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await self._connect()
        marks = [w for w in batch if not w.release]
        params = {
            **_arrays(marks, self.hold),
            "release": [w.key for w in batch if w.release],
            "owner": self._owner,
            "lease": self._lease,
        }
        cursor = await conn.execute(_WRITE, params)
        done = {row[0] for row in await cursor.fetchall()}
        self.commits += 1
        refused = [w for w in marks if w.key not in done]
        rows: dict[str, LedgerEntry] = {}
        if refused:
            cursor = await conn.execute(
                f"SELECT {ROW_COLUMNS} FROM {LEDGER} WHERE key = ANY(%s)",
                ([w.key for w in refused],),
            )
            rows = {e.key: e for e in map(entry_of, await cursor.fetchall())}
        owner = self._owner
        return [
            (None, None) if w.release or w.key in done else _refusal(rows.get(w.key), w, owner)
            for w in batch
        ]

    def _unexpected(self, exc: Exception) -> LedgerError:
        error = LedgerError(
            f"ledger {self._location}: a write failed unexpectedly ({type(exc).__name__}: {exc})"
        )
        error.__cause__ = exc
        return error

    async def _reconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
        self._conn = None
        log.warning("ledger %s: reconnecting the writer", self._location)


def _distinct_prefix(writes: list[PgWrite]) -> list[PgWrite]:
    """The longest prefix of ``writes`` with every key once (one statement may not change a
    row twice)."""
    seen: set[str] = set()
    for i, write in enumerate(writes):
        if write.key in seen:
            return writes[:i]
        seen.add(write.key)
    return writes


def _settle(batch: list[PgWrite], answers: list[Answer]) -> None:
    for write, (result, error) in zip(batch, answers, strict=True):
        if write.future.done():
            continue  # its caller stopped waiting: the write happened anyway
        if error is None:
            write.future.set_result(result)
        else:
            write.future.set_exception(error)


_ARRAY_TYPES = {
    "key": "text", "state": "text", "input_index": "int8", "job_id": "text", "outcome": "text",
    "error": "text", "paths": "text", "hold": "bool", "allowed": "text", "same": "bool",
    "match_job": "bool", "match_outcome": "bool", "set_job": "bool", "set_outcome": "bool",
    "set_error": "bool", "set_paths": "bool",
}  # fmt: skip
_NOW = "extract(epoch FROM now())"
_LEASE = "CASE WHEN v.hold THEN now() + %(lease)s * interval '1 second' END"
# %b: the arrays travel in binary (no quoting of each text element, no parsing on the server)
_UNNEST = ", ".join(f"%({name})b::{kind}[]" for name, kind in _ARRAY_TYPES.items())
_WRITE = f"""
WITH v AS (SELECT * FROM unnest({_UNNEST}) AS v({", ".join(_ARRAY_TYPES)})),
created AS (
    INSERT INTO {LEDGER} AS l (key, input_index, state, owner, lease_until, updated_at)
    SELECT v.key, v.input_index, 'creating', %(owner)s, {_LEASE}, {_NOW}
    FROM v WHERE v.state = 'creating'
    ON CONFLICT (key) DO UPDATE SET input_index = excluded.input_index, state = 'creating',
        job_id = NULL, outcome = NULL, error = NULL, paths = NULL, owner = excluded.owner,
        lease_until = excluded.lease_until, updated_at = excluded.updated_at
    WHERE l.state IN ({", ".join(f"'{s}'" for s in _CLAIMED_FIRST)}) AND l.owner = %(owner)s
    RETURNING l.key
),
moved AS (
    UPDATE {LEDGER} AS l SET state = v.state,
        job_id = CASE WHEN v.set_job THEN v.job_id ELSE l.job_id END,
        outcome = CASE WHEN v.set_outcome THEN v.outcome ELSE l.outcome END,
        error = CASE WHEN v.set_error THEN v.error ELSE l.error END,
        paths = CASE WHEN v.set_paths THEN v.paths ELSE l.paths END,
        owner = %(owner)s, lease_until = {_LEASE}, updated_at = {_NOW}
    FROM v WHERE l.key = v.key AND v.state <> 'creating' AND (
        l.state = ANY(string_to_array(v.allowed, ','))
        OR (v.same AND l.state = v.state
            AND (NOT v.match_job OR l.job_id IS NOT DISTINCT FROM v.job_id)
            AND (NOT v.match_outcome OR l.outcome IS NOT DISTINCT FROM v.outcome)))
    RETURNING l.key
),
released AS (
    UPDATE {LEDGER} AS l SET lease_until = NULL
    WHERE l.key = ANY(%(release)b::text[]) AND l.owner = %(owner)s
)
SELECT key FROM created UNION ALL SELECT key FROM moved
"""
