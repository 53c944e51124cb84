"""The SQLite ledger backend: one process's, durable, asyncio-friendly, group-committed.

Creates are billed and not idempotent, and the API has no idempotency key and no list endpoint
(``docs/PROTOCOL.md``, "Creating a job"). So a bulk run records, per input key, what it did *before*
and *after* each create, and a re-run after a crash reads the ledger instead of creating the job
again::

    async with await Ledger.open("run.db") as ledger:
        await ledger.mark_creating(key, index)      # durable BEFORE the create is sent
        job = await session.create_job(...)
        await ledger.mark_submitted(key, job.job_id)

The states and their legal transitions: :mod:`.base`.

How it works: one dedicated thread owns the one ``sqlite3`` connection, so the event loop never
touches the disk. Every call is a request queued to that thread (the calls of one event-loop
iteration are handed over together, and the ``get`` calls of one iteration are one query); the
thread takes everything pending, applies all writes in ONE transaction and commits once (WAL,
``synchronous=FULL``: durable on return), then resolves every caller. Under load, many
concurrent callers share one fsync (group commit).

Each write is guarded by its legal transition (:func:`.base.allowed_from`), so the writes of a
batch that move to the same state run as one statement (:mod:`.sqlite_writes`) with no read
before them; when they change fewer rows than they were given, the batch is undone and its
writes are applied one by one, a refused one raising :func:`.base.check_transition`'s error
for its caller alone.

Cancellation: a write is queued when its call starts (handed to the thread at the end of that
loop iteration, whatever happens to the caller meanwhile); cancelling the awaiting coroutine only
stops the waiting. The write is still applied atomically (or refused) exactly as if the caller
had waited. :meth:`SqliteLedger.close` drains every queued write before it returns.

The database is opened in SQLite's exclusive locking mode: while one ledger has the file open, no
other process (or ledger) can open it, so two runs of the same batch cannot both create. Many
processes share a batch through a PostgreSQL ledger instead (:mod:`.postgres`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ...errors import LedgerError
from .base import Ledger, LedgerEntry, LedgerState, LedgerSummary, check_transition, entry_of
from .sqlite_thread import DbThread, Request, close_if_opened
from .sqlite_writes import Answer, apply_writes, write_for
from .targets import checked_max_batch

__all__ = ["SCHEMA_VERSION", "Ledger", "LedgerEntry", "LedgerError", "LedgerState", "SqliteLedger"]

#: The version of the ledger's table layout; an older file is migrated, a newer one refused.
SCHEMA_VERSION = 2

_T = TypeVar("_T")
_Connection = sqlite3.Connection
_LOCK_WAIT_SECONDS = 1.0
_KEYS_PER_QUERY = 500  # below SQLite's historical limit of 999 bound variables
_DEFAULT_MAX_BATCH = 1024
_COLUMNS = "key, input_index, state, job_id, outcome, error, paths, updated_at"


# ----------------------------------------------------------------------------- schema


def _ledger_table(name: str) -> str:
    states = ", ".join(repr(s.value) for s in LedgerState)
    return f"""CREATE TABLE {name} (
    key TEXT PRIMARY KEY,
    input_index INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({states})),
    job_id TEXT NULL,
    outcome TEXT NULL,
    error TEXT NULL,
    paths TEXT NULL,
    updated_at REAL NOT NULL
)"""


#: An index on ``state`` is not kept: each create would update it twice, for the sake of
#: ``entries(state)`` and ``counts()``, which the job book runs now and then (a scan).
#: Files made before it was dropped lose it when opened.
_OLD_INDEX = "DROP INDEX IF EXISTS ledger_state"


def _connect(path: str, *, create: bool = True) -> _Connection:
    """Open ``path`` exclusively, in WAL mode with full fsync, with the schema in place
    (without ``create``, only a file that exists)."""
    if not create and not os.path.isfile(path):
        raise LedgerError(f"no chutes-jobs ledger at {path}: no such file")
    try:
        conn = sqlite3.connect(
            path, timeout=_LOCK_WAIT_SECONDS, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _ensure_schema(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise LedgerError(_open_failure(path, exc)) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _open_failure(path: str, exc: sqlite3.Error) -> str:
    if "locked" in str(exc) or "busy" in str(exc):
        return f"ledger {path} is in use by another process or Ledger (close it first)"
    return f"cannot open ledger {path}: {exc}"


def _ensure_schema(conn: _Connection, path: str) -> None:
    """Create the schema in an empty file, migrate an older one; refuse anything else."""
    conn.execute("BEGIN IMMEDIATE")  # also takes the exclusive lock for the ledger's lifetime
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not tables:
            conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(_ledger_table("ledger"))
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif "meta" not in tables or "ledger" not in tables:
            raise LedgerError(f"{path} is not a chutes-jobs ledger (it holds other tables)")
        else:
            _migrate(conn, path)
            conn.execute(_OLD_INDEX)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: _Connection, path: str) -> None:
    """Bring a ledger of an older schema version up to :data:`SCHEMA_VERSION`."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    found = None if row is None else row[0]
    if found == "1":  # version 2 adds the states todo and cancelled to the CHECK
        conn.execute(_ledger_table("ledger_v2"))
        conn.execute(f"INSERT INTO ledger_v2 ({_COLUMNS}) SELECT {_COLUMNS} FROM ledger")
        conn.execute("DROP TABLE ledger")
        conn.execute("ALTER TABLE ledger_v2 RENAME TO ledger")
        conn.execute("UPDATE meta SET value = '2' WHERE name = 'schema_version'")
    elif found != str(SCHEMA_VERSION):
        raise LedgerError(
            f"ledger {path} has schema version {found}, this chutes-jobs reads version "
            f"{SCHEMA_VERSION}: use a new ledger file or the chutes-jobs version that wrote it"
        )


# ----------------------------------------------------------------------------- reads


def select_one(conn: _Connection, key: str) -> LedgerEntry | None:
    """The row of ``key``, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM ledger WHERE key = ?", (key,)).fetchone()
    return None if row is None else entry_of(row)


def _select_many(conn: _Connection, keys: Sequence[str]) -> dict[str, LedgerEntry]:
    found: dict[str, LedgerEntry] = {}
    unique = list(dict.fromkeys(keys))
    conn.execute("BEGIN")  # one consistent snapshot across the chunks
    try:
        for start in range(0, len(unique), _KEYS_PER_QUERY):
            chunk = unique[start : start + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT {_COLUMNS} FROM ledger WHERE key IN ({marks})"
            found.update((e.key, e) for e in map(entry_of, conn.execute(sql, chunk)))
    finally:
        conn.execute("COMMIT")
    return found


def _select_state(conn: _Connection, state: LedgerState | None) -> list[LedgerEntry]:
    sql = f"SELECT {_COLUMNS} FROM ledger"
    args: tuple[str, ...] = ()
    if state is not None:
        sql, args = sql + " WHERE state = ?", (state.value,)
    return [entry_of(row) for row in conn.execute(sql + " ORDER BY input_index, key", args)]


def _count_states(conn: _Connection) -> dict[LedgerState, int]:
    counts = dict.fromkeys(LedgerState, 0)
    for state, n in conn.execute("SELECT state, COUNT(*) FROM ledger GROUP BY state"):
        counts[LedgerState(state)] = n
    return counts


def _apply(conn: _Connection, writes: list[Any]) -> list[Answer]:
    return apply_writes(conn, writes, lambda key: select_one(conn, key), check_transition)


_S = LedgerState


# ----------------------------------------------------------------------------- public API


class SqliteLedger(Ledger):
    """A SQLite ledger file, held by one process at a time. Open with :meth:`Ledger.open`.

    Every method is a coroutine that returns once its work is done on the ledger's own thread;
    every ``mark_*`` returns only once its write is committed durably.
    """

    def __init__(self, db: DbThread) -> None:
        """Use :meth:`open`."""
        self._db = db
        self._closed = False
        #: Requests of this event-loop iteration, handed to the thread together.
        self._buffer: list[Request[Any]] = []
        #: The keys asked by ``get`` in this iteration (one query for them all), and its answer.
        self._gets: list[str] | None = None
        self._gets_answer: asyncio.Future[dict[str, LedgerEntry]] | None = None

    @classmethod
    async def open(  # type: ignore[override]
        cls,
        path: str | os.PathLike[str],
        *,
        max_batch: int = _DEFAULT_MAX_BATCH,
        create: bool = True,
    ) -> SqliteLedger:
        """Open (or, with ``create``, create) the ledger file at ``path``.

        ``max_batch`` caps how many writes share one transaction (1: one commit per write).
        Raises :class:`LedgerError` if the file is missing (without ``create``), is not a
        ledger, has a newer schema version, or is open elsewhere.
        """
        connect = functools.partial(_connect, create=create)
        db = DbThread(os.fspath(path), checked_max_batch(max_batch), connect, _apply)
        try:
            # shield: cancelling the wait must not cancel the thread's own future
            await asyncio.shield(asyncio.wrap_future(db.opened))
        except asyncio.CancelledError:
            db.opened.add_done_callback(close_if_opened(db))
            raise
        return cls(db)

    @property
    def path(self) -> str:
        """The ledger's file path."""
        return self._db.path

    @property
    def location(self) -> str:
        """The ledger's file path."""
        return self._db.path

    @property
    def commit_count(self) -> int:
        """How many write transactions were committed so far (for monitoring and benchmarks)."""
        return self._db.commits

    async def close(self) -> None:
        """Apply every queued write, then close the file. Idempotent."""
        if not self._closed:
            self._closed = True
            self._flush()
            self._db.submit(None)
        await asyncio.shield(asyncio.wrap_future(self._db.stopped))

    def __repr__(self) -> str:
        return f"<SqliteLedger {self.path!r}{' closed' if self._closed else ''}>"

    # -- reads

    async def get(self, key: str) -> LedgerEntry | None:
        """The entry of ``key``, or None if the ledger has never seen it."""
        if self._closed:
            raise LedgerError(f"ledger {self.path} is closed")
        if self._gets is None:
            keys: list[str] = []
            self._gets = keys
            self._gets_answer = self._queue(lambda conn: _select_many(conn, keys), write=False)
        self._gets.append(key)
        assert self._gets_answer is not None
        # shield: one caller cancelled must not cancel the answer the others wait for
        found = await asyncio.shield(self._gets_answer)
        return found.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those ``keys`` the ledger knows, by key (one consistent read)."""
        keys = list(keys)
        return await self._call(lambda conn: _select_many(conn, keys), write=False)

    async def entries(self, state: LedgerState | None = None) -> list[LedgerEntry]:
        """Every entry (or those in ``state``), ordered by input index."""
        return await self._call(lambda conn: _select_state(conn, state), write=False)

    async def counts(self) -> dict[LedgerState, int]:
        """How many keys are in each state (every state present, zeros included)."""
        return await self._call(_count_states, write=False)

    async def summary(self) -> LedgerSummary:
        """Counts per state (one process's ledger: no owners, leases or shared pause)."""
        return LedgerSummary(location=self.path, counts=await self.counts())

    # -- writes

    async def mark_creating(self, key: str, index: int) -> None:
        """Record, before sending it, that a create is about to be sent for ``key``.

        Refused unless ``key`` is new or ``not_submitted``: the double-create guard.
        """
        await self._queue(write_for(key, _S.CREATING, input_index=index), write=True)

    def begin_create(self, key: str, index: int) -> asyncio.Future[LedgerEntry | None]:
        """:meth:`mark_creating` if ``key`` is new or ``not_submitted`` (None), else the entry
        the ledger holds (nothing written): one write instead of a read and a write."""
        return self._queue(write_for(key, _S.CREATING, input_index=index, or_entry=True),
                           write=True)  # fmt: skip

    async def mark_submitted(self, key: str, job_id: str) -> None:
        """Record the job id a create answered with (from ``creating`` or ``unknown``)."""
        await self._queue(write_for(key, _S.SUBMITTED, job_id=job_id, error=None), write=True)

    async def mark_unknown(self, key: str, error: str) -> None:
        """Record that the create may have reached the server but its answer was lost."""
        await self._queue(write_for(key, _S.UNKNOWN, error=error), write=True)

    async def mark_not_submitted(self, key: str, error: str) -> None:
        """Record that the create was refused before acting (the key may be retried)."""
        await self._queue(write_for(key, _S.NOT_SUBMITTED, error=error), write=True)

    async def mark_finished(
        self, key: str, *, outcome: str, failed: bool, error: str | None = None
    ) -> None:
        """Record a submitted job's final ``outcome`` (e.g. its status) and, if any, ``error``."""
        target = _S.FAILED if failed else _S.FINISHED
        await self._queue(write_for(key, target, outcome=outcome, error=error), write=True)

    async def mark_downloaded(self, key: str, paths: Mapping[str, str]) -> None:
        """Record where a finished job's outputs were written: ``{filename: path}``."""
        encoded = json.dumps({str(name): str(path) for name, path in paths.items()})
        await self._queue(write_for(key, _S.DOWNLOADED, paths=encoded), write=True)

    async def mark_cancelled(self, key: str, note: str) -> None:
        """Record that the key's job was deleted (or, not created yet, never will be)."""
        await self._queue(write_for(key, _S.CANCELLED, error=note), write=True)

    # -- plumbing

    async def _call(self, work: Callable[[_Connection], _T], *, write: bool) -> _T:
        result: _T = await self._queue(work, write=write)
        return result

    def _queue(self, work: Any, *, write: bool) -> asyncio.Future[Any]:
        if self._closed:
            raise LedgerError(f"ledger {self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._buffer:
            loop.call_soon(self._flush)
        self._buffer.append(Request(work, write, future, loop))
        return future

    def _flush(self) -> None:
        """Hand the buffered requests to the thread: one wake-up per loop iteration, not one
        per call (the thread's hand-over costs more than the work of most requests)."""
        requests, self._buffer = self._buffer, []
        self._gets = self._gets_answer = None  # later gets make a new query
        if requests:
            self._db.submit(requests)
