"""The SQLite ledger's database work, in plain data, importing only the standard library.

The same code runs in one of two places (:mod:`.sqlite` picks): in the writer *process* the
ledger starts by default (this file run as a script, ``python -I -S sqlite_core.py``: it must not
import the package, so it reads no ``chutes_jobs`` module and takes its SQL from the ledger), or
in a thread of the caller's process (:mod:`.sqlite_thread`). Either way one connection holds
the file in SQLite's exclusive locking mode, and every call is an *op*, a tuple:

* ``("w", target, key, row)``: a write, guarded by its legal transition (the statements come
  from :mod:`.sqlite_writes`, keyed by target state);
* ``("g", keys)``: the rows of ``keys``, one snapshot; ``("e", state or None)``: the rows in a
  state, by input index; ``("c",)``: ``[(state, count), ...]``.

:meth:`Executor.run` applies a batch: all writes in ONE transaction, one commit (WAL,
``synchronous=FULL``: durable when it returns), then the reads. Each op gets an *answer*:
``(OK, result)``, ``(REFUSED, row or None)`` (the write changed no row: the row as it is), or
``(FAILED, message)``. When the batch's statements change fewer rows than they were given (or
one write holds a value SQLite cannot bind), the batch is undone and its writes are applied
one at a time, so a refused write fails only its own caller. Within a batch the writes come
before the reads: a read sees every write handed over with it.

The process speaks frames on stdin/stdout: a 4-byte little-endian length, then a ``marshal``
payload (both ends are the same interpreter). The first frame in is ``(path, create, states,
statements, max_batch)``; the first out is ``(OK, None)`` or ``(FAILED, message)``. Then each
frame in is a list of ops, answered by one frame ``(commits, answers)`` in the same order, or
``(commits, message)`` if the batch failed unexpectedly (a bug: see :func:`unexpected`). At
EOF it applies what it has read, closes the file and exits; it ignores SIGINT (the caller's
Ctrl-C is the caller's to handle).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

__all__ = ["FAILED", "OK", "REFUSED", "SCHEMA_VERSION", "Executor", "OpenError", "connect"]

OK, REFUSED, FAILED = 0, 1, 2
#: The version of the ledger's table layout; an older file is migrated, a newer one refused.
SCHEMA_VERSION = 2

_Connection = sqlite3.Connection
Op = tuple[Any, ...]
Answer = tuple[int, Any]
#: Per target state: (one-row statement, multi-row head, one row's VALUES group, multi-row
#: tail, the one-row statement's parameter order as indices into a write's row).
Statements = dict[str, tuple[str, str, str, str, tuple[int, ...]]]

_LOCK_WAIT_SECONDS = 1.0
_KEYS_PER_QUERY = 500  # below SQLite's historical limit of 999 bound variables
_ROWS_PER_STATEMENT = 500  # at most 6 parameters a row, far below SQLite's 32,766
#: ``UPDATE ... FROM`` needs SQLite 3.33; older libraries run a statement per row.
_MULTI_ROW = sqlite3.sqlite_version_info >= (3, 33, 0)
COLUMNS = "key, input_index, state, job_id, outcome, error, paths, updated_at"
#: An index on ``state`` is not kept: each create would update it twice, for the sake of
#: reads the job book runs now and then (a scan). Files made before lose it when opened.
_OLD_INDEX = "DROP INDEX IF EXISTS ledger_state"


#: What executing a statement may raise besides SQLite's own errors: a value sqlite3 cannot
#: bind (a lone surrogate in text: UnicodeEncodeError; an int beyond 64 bits: OverflowError).
_REFUSED_VALUES = (sqlite3.Error, ValueError, OverflowError)


class OpenError(Exception):
    """The file cannot be opened as a ledger; the message says why, naming the path."""


# ----------------------------------------------------------------------------- schema


def _ledger_table(name: str, states: Sequence[str]) -> str:
    listed = ", ".join(repr(s) for s in states)
    return f"""CREATE TABLE {name} (
    key TEXT PRIMARY KEY,
    input_index INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({listed})),
    job_id TEXT NULL,
    outcome TEXT NULL,
    error TEXT NULL,
    paths TEXT NULL,
    updated_at REAL NOT NULL
)"""


def connect(path: str, *, create: bool, states: Sequence[str]) -> _Connection:
    """Open ``path`` exclusively, in WAL mode with full fsync, with the schema in place
    (without ``create``, only a file that exists). Raises :class:`OpenError`."""
    if not create and not os.path.isfile(path):
        raise OpenError(f"no chutes-jobs ledger at {path}: no such file")
    try:
        conn = sqlite3.connect(
            path, timeout=_LOCK_WAIT_SECONDS, isolation_level=None, check_same_thread=False
        )
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a NUL in the path
        raise OpenError(f"cannot open ledger {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _ensure_schema(conn, path, states)
    except sqlite3.Error as exc:
        conn.close()
        raise OpenError(_open_failure(path, exc)) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _open_failure(path: str, exc: sqlite3.Error) -> str:
    if "locked" in str(exc) or "busy" in str(exc):
        return f"ledger {path} is in use by another process or Ledger (close it first)"
    return f"cannot open ledger {path}: {exc}"


def _ensure_schema(conn: _Connection, path: str, states: Sequence[str]) -> None:
    """Create the schema in an empty file, migrate an older one; refuse anything else."""
    conn.execute("BEGIN IMMEDIATE")  # also takes the exclusive lock for the ledger's lifetime
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not tables:
            conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(_ledger_table("ledger", states))
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif "meta" not in tables or "ledger" not in tables:
            raise OpenError(f"{path} is not a chutes-jobs ledger (it holds other tables)")
        else:
            _migrate(conn, path, states)
            conn.execute(_OLD_INDEX)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: _Connection, path: str, states: Sequence[str]) -> None:
    """Bring a ledger of an older schema version up to :data:`SCHEMA_VERSION`."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    found = None if row is None else row[0]
    if found == "1":  # version 2 adds the states todo and cancelled to the CHECK
        conn.execute(_ledger_table("ledger_v2", states))
        conn.execute(f"INSERT INTO ledger_v2 ({COLUMNS}) SELECT {COLUMNS} FROM ledger")
        conn.execute("DROP TABLE ledger")
        conn.execute("ALTER TABLE ledger_v2 RENAME TO ledger")
        conn.execute("UPDATE meta SET value = '2' WHERE name = 'schema_version'")
    elif found != str(SCHEMA_VERSION):
        raise OpenError(
            f"ledger {path} has schema version {found}, this chutes-jobs reads version "
            f"{SCHEMA_VERSION}: use a new ledger file or the chutes-jobs version that wrote it"
        )


# ----------------------------------------------------------------------------- batches


class Executor:
    """Applies batches of ops on one connection; ``commits`` counts write transactions."""

    def __init__(self, conn: _Connection, statements: Statements, max_batch: int) -> None:
        self.conn = conn
        self.statements = statements
        self.max_batch = max_batch
        self.commits = 0
        self._made: dict[tuple[str, int], str] = {}

    def run(self, ops: Sequence[Op]) -> list[Answer]:
        """One answer per op, in order; at most ``max_batch`` ops share a transaction."""
        answers: list[Answer] = []
        for start in range(0, len(ops), self.max_batch):
            answers += self._run_chunk(ops[start : start + self.max_batch])
        return answers

    def rollback(self) -> None:
        """Leave the connection outside any transaction (after an unexpected error)."""
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    def _run_chunk(self, ops: Sequence[Op]) -> list[Answer]:
        answers: list[Answer] = [(OK, None)] * len(ops)
        writes = [i for i, op in enumerate(ops) if op[0] == "w"]
        if writes:
            for i, answer in zip(writes, self._commit([ops[i] for i in writes]), strict=True):
                answers[i] = answer
        for i, op in enumerate(ops):
            if op[0] != "w":
                answers[i] = self._read(op)
        return answers

    def _commit(self, writes: list[Op]) -> list[Answer]:
        """All writes in one transaction; one commit for them all."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._apply_together(writes):
                answers: list[Answer] = [(OK, None)] * len(writes)
            else:  # some write was refused: undo, then one by one in a new transaction
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                answers = [self._apply_alone(write) for write in writes]
            conn.execute("COMMIT")
        except sqlite3.Error:
            # The transaction itself failed (disk full, I/O error...): nothing of it was
            # committed. Each write alone, so every caller gets its own answer.
            self.rollback()
            self.commits += len(writes)
            return [self._write_alone(write) for write in writes]
        self.commits += 1
        return answers

    def _write_alone(self, write: Op) -> Answer:
        """One write in its own transaction."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            answer = self._apply_alone(write)
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback()
            return FAILED, str(exc)
        return answer

    def _apply_together(self, writes: list[Op]) -> bool:
        """One statement per target state (their order does not matter: every key is
        distinct); True when every write changed its row. Keys seen twice: False."""
        if not _MULTI_ROW or len({w[2] for w in writes}) < len(writes):
            return False
        by_target: dict[str, list[Op]] = {}
        for write in writes:
            by_target.setdefault(write[1], []).append(write)
        before = self.conn.total_changes
        try:
            for target, group in by_target.items():
                for start in range(0, len(group), _ROWS_PER_STATEMENT):
                    chunk = group[start : start + _ROWS_PER_STATEMENT]
                    params = list(chain.from_iterable([w[3] for w in chunk]))
                    self.conn.execute(self._many(target, len(chunk)), params)
        except _REFUSED_VALUES:  # one write's fault: each alone says whose
            return False
        return self.conn.total_changes - before == len(writes)

    def _apply_alone(self, write: Op) -> Answer:
        """One write inside the open transaction: OK, REFUSED with the row as it is, or
        FAILED with SQLite's message."""
        _, target, key, row = write
        one, _head, _group, _tail, order = self.statements[target]
        before = self.conn.total_changes
        try:
            self.conn.execute(one, [row[i] for i in order])
        except _REFUSED_VALUES as exc:
            return FAILED, str(exc)
        if self.conn.total_changes - before == 1:
            return OK, None
        found = self.conn.execute(f"SELECT {COLUMNS} FROM ledger WHERE key = ?", (key,))
        return REFUSED, found.fetchone()

    def _many(self, target: str, rows: int) -> str:
        """The statement writing ``rows`` rows into ``target`` (the common sizes kept)."""
        sql = self._made.get((target, rows))
        if sql is None:
            _one, head, group, tail, _order = self.statements[target]
            sql = head + ", ".join([group] * rows) + tail
            if len(self._made) < 256:
                self._made[target, rows] = sql
        return sql

    def _read(self, op: Op) -> Answer:
        """A read's answer; whatever it raises fails it alone (the batch's writes are
        committed by now: they must not be reported failed)."""
        try:
            if op[0] == "g":
                return OK, self._rows_of(op[1])
            if op[0] == "e":
                sql, args = f"SELECT {COLUMNS} FROM ledger", []
                if op[1] is not None:
                    sql, args = sql + " WHERE state = ?", [op[1]]
                return OK, self.conn.execute(sql + " ORDER BY input_index, key", args).fetchall()
            if op[0] == "c":
                return OK, self.conn.execute(
                    "SELECT state, COUNT(*) FROM ledger GROUP BY state"
                ).fetchall()
        except Exception as exc:
            self.rollback()
            return FAILED, str(exc)
        return FAILED, f"unknown request {op[0]!r}"

    def _rows_of(self, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        unique = list(dict.fromkeys(keys))
        rows: list[tuple[Any, ...]] = []
        self.conn.execute("BEGIN")  # one consistent snapshot across the chunks
        try:
            for start in range(0, len(unique), _KEYS_PER_QUERY):
                chunk = unique[start : start + _KEYS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT {COLUMNS} FROM ledger WHERE key IN ({marks})"
                rows += self.conn.execute(sql, chunk).fetchall()
        finally:
            self.conn.execute("COMMIT")
        return rows


# ----------------------------------------------------------------------------- the process

_HEADER = struct.Struct("<I")


def frame(payload: Any) -> bytes:
    """``payload`` as one frame: its length, then its ``marshal`` form."""
    data = marshal.dumps(payload)
    return _HEADER.pack(len(data)) + data


def unframe(buffer: bytearray) -> list[Any]:
    """Take every complete frame off the front of ``buffer``."""
    payloads = []
    while len(buffer) >= 4:
        (size,) = _HEADER.unpack_from(buffer)
        if len(buffer) < 4 + size:
            break
        payloads.append(marshal.loads(buffer[4 : 4 + size]))
        del buffer[: 4 + size]
    return payloads


def _read_frames(fd: int, buffer: bytearray) -> tuple[list[Any], bool]:
    """Block for at least one frame, then take every one already readable; and whether the
    input has ended."""
    frames: list[Any] = []
    while True:
        wait = None if not frames else 0
        if frames and not select.select([fd], [], [], wait)[0]:
            return frames, False
        data = os.read(fd, 1 << 20)
        if not data:
            return frames + unframe(buffer), True
        buffer += data
        frames += unframe(buffer)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(fd_in: int = 0, fd_out: int = 1) -> None:
    """The writer process: open the ledger the first frame names, then answer op batches
    until the input ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    buffer = bytearray()
    frames, ended = _read_frames(fd_in, buffer)
    path, create, states, statements, max_batch = frames.pop(0)
    try:
        conn = connect(path, create=create, states=states)
    except OpenError as exc:
        _answer_open(fd_out, (FAILED, str(exc)))
        return
    if not _answer_open(fd_out, (OK, None)):  # its caller is gone before using it
        conn.close()
        return
    executor = Executor(conn, statements, max_batch)
    answering = True
    try:
        while frames or not ended:
            if not frames:
                frames, ended = _read_frames(fd_in, buffer)
            answers = b"".join(_answer(executor, frames))
            frames = []
            if answering:
                try:
                    write_all(fd_out, answers)
                except BrokenPipeError:  # the caller is gone: apply the rest of its input
                    answering = False
    finally:
        conn.close()


def _answer_open(fd_out: int, answer: Answer) -> bool:
    """Tell the caller how the open went; False if it is gone (nothing to print: it was
    interrupted or killed while the file opened)."""
    try:
        write_all(fd_out, frame(answer))
    except BrokenPipeError:
        return False
    return True


def _answer(executor: Executor, frames: list[list[Op]]) -> list[bytes]:
    """Run the ops of every frame as one batch; one answer frame per frame."""
    ops = list(chain.from_iterable(frames))
    try:
        answers = executor.run(ops)
    except Exception as exc:  # a bug: fail this batch's callers and go on serving
        executor.rollback()
        failure = unexpected(exc)
        return [frame((executor.commits, failure)) for _ in frames]
    return [frame((executor.commits, mine)) for mine in split(answers, frames)]


def split(answers: list[Answer], batches: Iterable[Sequence[Op]]) -> list[list[Answer]]:
    """The answers of ops run together, cut back into the batches they came in."""
    cut, start = [], 0
    for batch in batches:
        cut.append(answers[start : start + len(batch)])
        start += len(batch)
    return cut


def unexpected(exc: Exception) -> str:
    """What the callers of a batch that failed unexpectedly (a bug, not SQLite's refusal) are
    told: their writes may or may not be recorded."""
    return (
        f"a request failed unexpectedly ({type(exc).__name__}: {exc}); whether this batch's "
        "writes were recorded is unknown"
    )


if __name__ == "__main__":
    serve()
