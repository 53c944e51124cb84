"""The one thread that owns a SQLite connection and applies queued requests in batches.

Every call is a request queued to that thread (the calls of one event-loop iteration are handed
over together); the thread takes everything pending, applies all writes in ONE transaction
(``apply_writes`` makes sure a refused or failing write affects only its caller), commits once,
then resolves every caller on its event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import attrs

from ...errors import LedgerError

__all__ = ["DbThread", "Request", "close_if_opened"]

_T = TypeVar("_T")
_Connection = sqlite3.Connection


@attrs.define
class Request(Generic[_T]):
    """One call: a read (``work`` is a function of the connection) or a write (``work`` is
    the backend's description of it, handed to ``apply_writes`` with the batch's others)."""

    work: Any
    write: bool
    future: asyncio.Future[_T]
    loop: asyncio.AbstractEventLoop


_Outcome = tuple["Request[Any]", Any, BaseException | None]
#: Applies a batch's writes inside its transaction: one (result, error) per write, in order.
ApplyWrites = Callable[[_Connection, list[Any]], list[tuple[Any, BaseException | None]]]


def _settle(outcomes: Iterable[_Outcome]) -> None:
    """On the event loop: hand each caller its result, unless it stopped waiting."""
    for request, result, error in outcomes:
        if request.future.done():
            continue  # cancelled: the write happened anyway
        if error is None:
            request.future.set_result(result)
        else:
            request.future.set_exception(error)


class DbThread:
    """The one thread that owns the connection and applies queued requests in batches."""

    def __init__(
        self,
        path: str,
        max_batch: int,
        connect: Callable[[str], _Connection],
        apply_writes: ApplyWrites,
    ) -> None:
        self.path = path
        self._connect = connect
        self._apply_writes = apply_writes
        self.max_batch = max_batch
        self.commits = 0
        self.opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue: queue.SimpleQueue[list[Request[Any]] | None] = queue.SimpleQueue()
        #: Requests taken from the queue beyond ``max_batch``: the next batch starts with them.
        self._carry: list[Request[Any]] = []
        self._stop_seen = False
        self._thread = threading.Thread(target=self._main, name="chutes-jobs-ledger", daemon=True)
        self._thread.start()

    def submit(self, requests: list[Request[Any]] | None) -> None:
        """Queue requests (None: close the connection once everything before it is done)."""
        self._queue.put(requests)

    def _main(self) -> None:
        try:
            conn = self._connect(self.path)
        except BaseException as exc:
            self.opened.set_exception(exc)
            return
        self.opened.set_result(None)
        try:
            self._serve(conn)
        finally:
            conn.close()
            self.stopped.set_result(None)

    def _serve(self, conn: _Connection) -> None:
        while True:
            batch, stop = self._next_batch()
            try:
                self._run_batch(conn, batch)
            except Exception as exc:
                # Not an SQLite error (those are answered per caller): a bug, or a warning
                # turned into an error. Fail this batch's callers and go on serving, so no
                # caller waits forever on a thread that died.
                self._fail_batch(conn, batch, exc)
            if stop:
                return

    def _fail_batch(self, conn: _Connection, batch: list[Request[Any]], exc: Exception) -> None:
        """Answer every caller of ``batch`` with a LedgerError (whether its write was
        committed is unknown) and leave the connection outside any transaction."""
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        error = f"ledger {self.path}: a request failed unexpectedly ({type(exc).__name__}: {exc})"
        outcomes: list[_Outcome] = []
        for request in batch:
            failure = LedgerError(error)
            failure.__cause__ = exc
            outcomes.append((request, None, failure))
        self._deliver(outcomes)

    def _next_batch(self) -> tuple[list[Request[Any]], bool]:
        """Block for requests, then take what else is pending, up to ``max_batch``; and
        whether the connection is to be closed after this batch."""
        batch = self._carry
        while not self._stop_seen and len(batch) < self.max_batch:
            try:
                item = self._queue.get(block=not batch)
            except queue.Empty:
                break
            if item is None:
                self._stop_seen = True
            else:
                batch += item
        self._carry = batch[self.max_batch :]
        return batch[: self.max_batch], self._stop_seen and not self._carry

    def _run_batch(self, conn: _Connection, batch: list[Request[Any]]) -> None:
        writes = [r for r in batch if r.write]
        outcomes = self._commit_writes(conn, writes) if writes else []
        outcomes += [_run_alone(conn, r) for r in batch if not r.write]
        self._deliver(outcomes)

    def _commit_writes(self, conn: _Connection, writes: list[Request[Any]]) -> list[_Outcome]:
        """All writes in one transaction; one commit for them all."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            answers = self._apply_writes(conn, [r.work for r in writes])
            conn.execute("COMMIT")
        except sqlite3.Error:
            # The transaction itself failed (disk full, I/O error...): nothing of it was
            # committed. Retry each write alone so every caller gets its own answer.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.commits += len(writes)
            return [self._write_alone(conn, r) for r in writes]
        self.commits += 1
        return [(r, *answer) for r, answer in zip(writes, answers, strict=True)]

    def _write_alone(self, conn: _Connection, request: Request[Any]) -> _Outcome:
        """One write in its own transaction."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            answer = self._apply_writes(conn, [request.work])[0]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return request, None, exc
        return (request, *answer)

    def _deliver(self, outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(_settle, items)


def _run_alone(conn: _Connection, request: Request[Any]) -> _Outcome:
    """Run one read."""
    try:
        result = request.work(conn)
    except Exception as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return request, None, exc
    return request, result, None


def close_if_opened(db: DbThread) -> Callable[[concurrent.futures.Future[None]], None]:
    """A callback closing ``db`` once it has opened (its opener was cancelled meanwhile)."""

    def close(opened: concurrent.futures.Future[None]) -> None:
        if opened.exception() is None:
            db.submit(None)

    return close
