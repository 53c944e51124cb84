"""The shared ledger's writes: group-committed on one connection, checked row by row.

Every ``mark_*`` is queued; one writer task takes everything pending and, in ONE transaction,
locks the rows it touches (``SELECT ... ORDER BY key FOR UPDATE``: writers of several processes
lock in the same order, so they never deadlock), checks each write against the row as it is
then (:func:`.base.check_transition`; a refused write fails only its caller), writes the final
rows (one ``INSERT`` for new keys, one ``UPDATE ... FROM unnest(...)`` for the others) and
commits once. Writes queued while a commit is under way share the next one.

A write into ``creating`` from ``todo`` or ``not_submitted`` also needs the row to be claimed
by this process (the claim sets ``owner``): an input another process claimed since is refused
with :class:`LeaseLostError` and nothing is sent for it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import attrs
import psycopg

from ...errors import LeaseLostError, LedgerError
from .base import LedgerEntry, LedgerState, check_transition, columns_set
from .postgres_schema import LEDGER

__all__ = ["PgWrite", "PgWriter", "entry_of"]

log = logging.getLogger("chutes_jobs")

_S = LedgerState
_Conn = psycopg.AsyncConnection[tuple[Any, ...]]
#: Columns read to check writes, in this order (``entry_of`` reads them).
ROW_COLUMNS = "key, input_index, state, job_id, outcome, error, paths, updated_at, owner"
#: Columns a write sets, in the order of the arrays sent.
_WRITTEN = ("state", "input_index", "job_id", "outcome", "error", "paths")


def entry_of(row: tuple[Any, ...]) -> LedgerEntry:
    """A :class:`LedgerEntry` from a row of :data:`ROW_COLUMNS`."""
    key, index, state, job_id, outcome, error, paths, updated_at, owner = row
    return LedgerEntry(
        key=key,
        input_index=index,
        state=LedgerState(state),
        job_id=job_id,
        outcome=outcome,
        error=error,
        paths=None if paths is None else json.loads(paths),
        updated_at=updated_at,
        owner=owner,
    )


@attrs.define
class PgWrite:
    """One queued write: ``key`` becomes ``target`` with ``values``; its caller's future."""

    key: str
    target: LedgerState
    values: dict[str, Any]
    future: asyncio.Future[LedgerEntry | None]
    or_entry: bool = False  #: a refused write answers the row as it is, not an error
    release: bool = False  #: not a mark: give up the lease, state unchanged


class _Raced(Exception):
    """Another process inserted a key this batch meant to insert: read again, write again."""


@attrs.define
class _Plan:
    """What one batch writes: the final row per key, which keys are new, each caller's answer."""

    rows: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    new: set[str] = attrs.field(factory=set)
    released: set[str] = attrs.field(factory=set)
    answers: list[tuple[LedgerEntry | None, BaseException | None]] = attrs.field(factory=list)


def plan(batch: list[PgWrite], found: dict[str, LedgerEntry], owner: str) -> _Plan:
    """Check every write of ``batch`` in order against the rows ``found`` (and the writes
    before it); the rows to write."""
    result = _Plan()
    current: dict[str, LedgerEntry | None] = dict(found)
    for write in batch:
        before = current.get(write.key)
        if write.release:
            result.answers.append((None, None))
            if before is not None and before.owner == owner:
                result.released.add(write.key)
            continue
        try:
            _check(before, write, owner)
        except LedgerError as exc:
            refused = write.or_entry and before is not None and not isinstance(exc, LeaseLostError)
            result.answers.append((before, None) if refused else (None, exc))
            continue
        after = _apply(before, write, owner)
        current[write.key] = after
        if write.key not in found:
            result.new.add(write.key)
        result.rows[write.key] = attrs.asdict(after)
        result.answers.append((None, None))
    return result


def _check(before: LedgerEntry | None, write: PgWrite, owner: str) -> None:
    check_transition(before, write.key, write.target, write.values)
    claimable = (_S.TODO, _S.NOT_SUBMITTED)
    creating = write.target is _S.CREATING and before is not None and before.state in claimable
    if creating and before is not None and before.owner != owner:
        raise LeaseLostError(
            f"ledger key {write.key!r} is claimed by {before.owner or 'no process'}, "
            f"not by this process ({owner}): not created here"
        )


def _apply(before: LedgerEntry | None, write: PgWrite, owner: str) -> LedgerEntry:
    values = {name: write.values[name] for name in columns_set(write.target)}
    if "paths" in values:
        values["paths"] = json.loads(values["paths"])
    if write.target is _S.CREATING:  # a new attempt: nothing of an earlier one stays
        return LedgerEntry(write.key, values["input_index"], _S.CREATING, None, None, None,
                           None, 0.0, owner)  # fmt: skip
    assert before is not None  # check_transition: only creating starts a row
    return attrs.evolve(before, state=write.target, owner=owner, **values)


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
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                _settle(batch, await self._commit(batch))
            if self._closing:
                return

    async def _commit(self, batch: list[PgWrite]) -> list[tuple[Any, BaseException | None]]:
        for _ in range(3):
            try:
                return await self._transaction(batch)
            except _Raced:
                continue  # another process inserted a key first: read it and check again
            except psycopg.Error as exc:
                error = LedgerError(f"ledger {self._location}: write failed: {exc}")
                await self._reconnect()
                return [(None, error)] * len(batch)
        error = LedgerError(f"ledger {self._location}: keys kept being inserted concurrently")
        return [(None, error)] * len(batch)

    async def _transaction(self, batch: list[PgWrite]) -> list[tuple[Any, BaseException | None]]:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await self._connect()
        keys = sorted({w.key for w in batch})
        async with conn.transaction():
            cursor = await conn.execute(
                f"SELECT {ROW_COLUMNS} FROM {LEDGER} WHERE key = ANY(%s) ORDER BY key FOR UPDATE",
                (keys,),
            )
            found = {e.key: e for e in map(entry_of, await cursor.fetchall())}
            todo = plan(batch, found, self._owner)
            await self._write(conn, todo)
        self.commits += 1
        return todo.answers

    async def _write(self, conn: _Conn, todo: _Plan) -> None:
        new = [row for key, row in todo.rows.items() if key in todo.new]
        old = [row for key, row in todo.rows.items() if key not in todo.new]
        common = {"owner": self._owner, "lease": self._lease}
        if new:
            cursor = await conn.execute(_INSERT, {**common, **self._arrays(new)})
            if cursor.rowcount != len(new):
                raise _Raced
        if old:
            await conn.execute(_UPDATE, {**common, **self._arrays(old)})
        if todo.released:
            await conn.execute(
                f"UPDATE {LEDGER} SET lease_until = NULL WHERE key = ANY(%s) AND owner = %s",
                (sorted(todo.released), self._owner),
            )

    def _arrays(self, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        arrays: dict[str, list[Any]] = {"key": [row["key"] for row in rows]}
        for name in _WRITTEN:
            arrays[name] = [row[name] for row in rows]
        arrays["state"] = [str(s) for s in arrays["state"]]
        arrays["paths"] = [None if p is None else json.dumps(dict(p)) for p in arrays["paths"]]
        arrays["hold"] = [row["state"] in self.hold for row in rows]
        return arrays

    async def _reconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
        self._conn = None
        log.warning("ledger %s: reconnecting the writer", self._location)


def _settle(batch: list[PgWrite], answers: list[tuple[Any, BaseException | None]]) -> None:
    for write, (result, error) in zip(batch, answers, strict=True):
        if write.future.done():
            continue  # its caller stopped waiting: the write happened anyway
        if error is None:
            write.future.set_result(result)
        else:
            write.future.set_exception(error)


_VALUES = """unnest(%(key)s::text[], %(state)s::text[], %(input_index)s::bigint[],
    %(job_id)s::text[], %(outcome)s::text[], %(error)s::text[], %(paths)s::text[],
    %(hold)s::bool[]) AS v(key, state, input_index, job_id, outcome, error, paths, hold)"""
_LEASE = "CASE WHEN v.hold THEN now() + %(lease)s * interval '1 second' END"
_INSERT = f"""INSERT INTO {LEDGER} (key, input_index, state, job_id, outcome, error, paths,
    owner, lease_until, updated_at)
    SELECT v.key, v.input_index, v.state, v.job_id, v.outcome, v.error, v.paths, %(owner)s,
    {_LEASE}, extract(epoch FROM now()) FROM {_VALUES}
    ON CONFLICT (key) DO NOTHING"""
_UPDATE = f"""UPDATE {LEDGER} AS l SET state = v.state, input_index = v.input_index,
    job_id = v.job_id, outcome = v.outcome, error = v.error, paths = v.paths,
    owner = %(owner)s, lease_until = {_LEASE}, updated_at = extract(epoch FROM now())
    FROM {_VALUES} WHERE l.key = v.key"""
