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

How it works: one connection holds the file, in a writer process of its own by default
(:mod:`.sqlite_process`; ``writer="thread"``, or where no second interpreter can start, a thread
of this process: :mod:`.sqlite_thread`), so the event loop never touches the disk. Every call
is an op (:mod:`.sqlite_core`) buffered until the end of the event-loop iteration, and the ops
of one iteration are handed over together (the ``get`` calls of one iteration are one query);
the writer takes every batch pending, applies all their writes in ONE transaction and commits
once (WAL, ``synchronous=FULL``: durable on return), then answers every caller. Under load,
many concurrent callers share one fsync (group commit).

Each write is guarded by its legal transition (:func:`.base.allowed_from`), so the writes of a
batch that move to the same state run as one statement (:mod:`.sqlite_writes`) with no read
before them; when they change fewer rows than they were given, the batch is undone and its
writes are applied one by one, a refused one raising :func:`.base.check_transition`'s error
for its caller alone (:mod:`.sqlite_writes`).

Cancellation: a write is queued when its call starts (handed to the writer at the end of that
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ...errors import LedgerError
from .base import Ledger, LedgerEntry, LedgerState, LedgerSummary, entry_of
from .sqlite_core import OK, SCHEMA_VERSION, Answer, Executor, Op, OpenError, connect
from .sqlite_process import WriterProcess, can_start
from .sqlite_thread import DbThread
from .sqlite_writes import STATEMENTS, Write, plain_key, write_for, write_outcome
from .targets import checked_max_batch

__all__ = ["SCHEMA_VERSION", "Ledger", "LedgerEntry", "LedgerError", "LedgerState", "SqliteLedger"]

_DEFAULT_MAX_BATCH = 1024
_STATES = [s.value for s in LedgerState]
_S = LedgerState
#: How a read's rows become its caller's result.
_Decode = Callable[[Any], Any]
#: One call buffered in this loop iteration: its op, its future, and its write (for the
#: meaning of a refusal) or a read's decoder.
_Call = tuple[Op, "asyncio.Future[Any]", Write | _Decode]


def _by_key(rows: list[Any]) -> dict[str, LedgerEntry]:
    return {row[0]: entry_of(row) for row in rows}


def _entries(rows: list[Any]) -> list[LedgerEntry]:
    return [entry_of(row) for row in rows]


def _counts(rows: list[Any]) -> dict[LedgerState, int]:
    counts = dict.fromkeys(LedgerState, 0)
    for state, n in rows:
        counts[LedgerState(state)] = n
    return counts


def _open_executor(path: str, create: bool, max_batch: int) -> Executor:
    try:
        return Executor(connect(path, create=create, states=_STATES), STATEMENTS, max_batch)
    except OpenError as exc:
        raise LedgerError(str(exc)) from exc.__cause__


async def _start_thread(path: str, create: bool, max_batch: int) -> DbThread:
    db = DbThread(path, functools.partial(_open_executor, path, create, max_batch))
    try:
        # shield: cancelling the wait must not cancel the thread's own future
        await asyncio.shield(asyncio.wrap_future(db.opened))
    except asyncio.CancelledError:
        db.opened.add_done_callback(lambda opened: None if opened.exception() else db.close())
        raise
    return db


# ----------------------------------------------------------------------------- public API


class SqliteLedger(Ledger):
    """A SQLite ledger file, held by one process at a time. Open with :meth:`Ledger.open`.

    Every method is a coroutine that returns once its work is done by the ledger's writer;
    every ``mark_*`` returns only once its write is committed durably. Each raises
    :class:`LedgerError` for a refused transition, and for a key or value the file cannot
    hold (a key is text; an index a 64-bit int; a job id, outcome or paths text; text has
    no lone surrogates, except an error text, kept with U+FFFD): that call alone fails.
    """

    def __init__(self, path: str, writer: WriterProcess | DbThread) -> None:
        """Use :meth:`open`."""
        self._path = path
        self._writer = writer
        #: The one event loop a writer process serves (None: a thread serves any loop).
        self._loop = writer.loop if isinstance(writer, WriterProcess) else None
        self._closed = False
        #: Calls of this event-loop iteration, handed to the writer together.
        self._buffer: list[_Call] = []
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
        writer: Literal["process", "thread"] = "process",
    ) -> SqliteLedger:
        """Open (or, with ``create``, create) the ledger file at ``path``.

        ``max_batch`` caps how many calls share one transaction (1: one commit per write).
        ``writer``: ``"process"`` (the default) holds the file in a writer process started
        with this interpreter, which keeps the disk work off this process's GIL;
        ``"thread"`` in a thread of this process (taken anyway where no process can start:
        no ``sys.executable``, or not POSIX). Raises :class:`LedgerError` if the file is
        missing (without ``create``), is not a ledger, has a newer schema version, or is
        open elsewhere, or the writer process cannot start.
        """
        path = os.fspath(path)
        max_batch = checked_max_batch(max_batch)
        if writer not in ("process", "thread"):
            raise LedgerError(f"ledger option writer={writer!r}: 'process' or 'thread'")
        if writer == "process" and can_start():
            started: WriterProcess | DbThread = await WriterProcess.start(
                path, create=create, states=_STATES, statements=STATEMENTS, max_batch=max_batch
            )
        else:
            started = await _start_thread(path, create, max_batch)
        return cls(path, started)

    @property
    def path(self) -> str:
        """The ledger's file path."""
        return self._path

    @property
    def location(self) -> str:
        """The ledger's file path."""
        return self._path

    @property
    def writer(self) -> Literal["process", "thread"]:
        """Where the connection lives: ``"process"`` or ``"thread"``."""
        return "process" if isinstance(self._writer, WriterProcess) else "thread"

    @property
    def commit_count(self) -> int:
        """How many write transactions were committed so far (for monitoring and benchmarks)."""
        return self._writer.commits

    async def close(self) -> None:
        """Apply every queued write, then close the file. Idempotent; any event loop may
        close it (on another loop than the opener's, answers still due to the opener's
        callers reach them only if that loop runs again)."""
        if not self._closed:
            self._closed = True
            if self._loop is None or self._loop is asyncio.get_running_loop():
                self._flush()  # on another loop nothing was buffered, and it is not ours
            self._writer.close()
        await self._writer.wait_stopped()

    def __repr__(self) -> str:
        return f"<SqliteLedger {self.path!r}{' closed' if self._closed else ''}>"

    # -- reads

    async def get(self, key: str) -> LedgerEntry | None:
        """The entry of ``key``, or None if the ledger has never seen it."""
        key = plain_key(key)
        if self._gets is None:
            keys: list[str] = []
            self._gets_answer = self._queue(("g", keys), _by_key)
            self._gets = keys
        self._gets.append(key)
        assert self._gets_answer is not None
        # shield: one caller cancelled must not cancel the answer the others wait for
        found = await asyncio.shield(self._gets_answer)
        return found.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those ``keys`` the ledger knows, by key (one consistent read)."""
        keys = [plain_key(k) for k in keys]
        found: dict[str, LedgerEntry] = await self._queue(("g", keys), _by_key)
        return found

    async def entries(self, state: LedgerState | None = None) -> list[LedgerEntry]:
        """Every entry (or those in ``state``), ordered by input index."""
        op = ("e", None if state is None else LedgerState(state).value)
        found: list[LedgerEntry] = await self._queue(op, _entries)
        return found

    async def counts(self) -> dict[LedgerState, int]:
        """How many keys are in each state (every state present, zeros included)."""
        found: dict[LedgerState, int] = await self._queue(("c",), _counts)
        return found

    async def summary(self) -> LedgerSummary:
        """Counts per state (one process's ledger: no owners, leases or shared pause)."""
        return LedgerSummary(location=self.path, counts=await self.counts())

    # -- writes

    async def mark_creating(self, key: str, index: int) -> None:
        """Record, before sending it, that a create is about to be sent for ``key``.

        Refused unless ``key`` is new or ``not_submitted``: the double-create guard.
        """
        await self._write(key, _S.CREATING, input_index=index)

    def begin_create(self, key: str, index: int) -> asyncio.Future[LedgerEntry | None]:
        """:meth:`mark_creating` if ``key`` is new or ``not_submitted`` (None), else the entry
        the ledger holds (nothing written): one write instead of a read and a write."""
        return self._write(key, _S.CREATING, input_index=index, or_entry=True)

    async def mark_submitted(self, key: str, job_id: str) -> None:
        """Record the job id a create answered with (from ``creating`` or ``unknown``)."""
        await self._write(key, _S.SUBMITTED, job_id=job_id, error=None)

    async def mark_unknown(self, key: str, error: str) -> None:
        """Record that the create may have reached the server but its answer was lost."""
        await self._write(key, _S.UNKNOWN, error=error)

    async def mark_not_submitted(self, key: str, error: str) -> None:
        """Record that the create was refused before acting (the key may be retried)."""
        await self._write(key, _S.NOT_SUBMITTED, error=error)

    async def mark_finished(
        self, key: str, *, outcome: str, failed: bool, error: str | None = None
    ) -> None:
        """Record a submitted job's final ``outcome`` (e.g. its status) and, if any, ``error``."""
        target = _S.FAILED if failed else _S.FINISHED
        await self._write(key, target, outcome=outcome, error=error)

    async def mark_downloaded(self, key: str, paths: Mapping[str, str]) -> None:
        """Record where a finished job's outputs were written: ``{filename: path}``."""
        encoded = json.dumps({str(name): str(path) for name, path in paths.items()})
        await self._write(key, _S.DOWNLOADED, paths=encoded)

    async def mark_cancelled(self, key: str, note: str) -> None:
        """Record that the key's job was deleted (or, not created yet, never will be)."""
        await self._write(key, _S.CANCELLED, error=note)

    # -- plumbing

    def _write(
        self, key: str, target: LedgerState, *, or_entry: bool = False, **values: Any
    ) -> asyncio.Future[Any]:
        try:
            write = write_for(key, target, or_entry=or_entry, **values)
        except LedgerError as exc:  # a value the file cannot hold: this caller's error alone
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        return self._queue(write.op, write)

    def _queue(self, op: Op, meaning: Write | _Decode) -> asyncio.Future[Any]:
        if self._closed:
            raise LedgerError(f"ledger {self.path} is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not None and loop is not self._loop:
            raise LedgerError(
                f"ledger {self.path} is used from another event loop than the one that opened "
                "it (open it with writer='thread' to share it between loops)"
            )
        future: asyncio.Future[Any] = loop.create_future()
        if not self._buffer:
            loop.call_soon(self._flush)
        self._buffer.append((op, future, meaning))
        return future

    def _flush(self) -> None:
        """Hand the buffered calls to the writer: one hand-over per loop iteration, not one
        per call (the hand-over costs more than the work of most calls)."""
        calls, self._buffer = self._buffer, []
        self._gets = self._gets_answer = None  # later gets make a new query
        if calls:
            settle = functools.partial(self._settle, calls)
            try:
                self._writer.submit([call[0] for call in calls], settle)
            except Exception as exc:  # a value that cannot be sent: nobody may wait forever
                settle(LedgerError(f"ledger {self.path}: cannot hand calls to its writer: {exc}"))

    def _settle(self, calls: list[_Call], answers: list[Answer] | LedgerError) -> None:
        """On the event loop: hand each caller its result, unless it stopped waiting (a
        cancelled caller's write happened anyway)."""
        if isinstance(answers, LedgerError):
            for _op, future, _meaning in calls:
                if not future.done():
                    future.set_exception(answers)
            return
        for (_op, future, meaning), answer in zip(calls, answers, strict=True):
            if future.done():
                continue
            if isinstance(meaning, Write):
                if answer[0] == OK:
                    future.set_result(None)
                    continue
                result, error = write_outcome(meaning, answer)
            elif answer[0] == OK:
                result, error = meaning(answer[1]), None
            else:
                result, error = None, LedgerError(f"ledger {self.path}: {answer[1]}")
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
