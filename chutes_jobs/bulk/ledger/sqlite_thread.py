"""The SQLite ledger's thread writer: a thread of this process owns the connection.

The fallback to the writer process (:mod:`.sqlite_process`), for where a second interpreter
cannot be started, and ``writer="thread"``. The thread takes every batch of ops pending, runs
them together (:class:`.sqlite_core.Executor`: one transaction, one commit), then hands each
batch its answers on the event loop that sent it. It shares the GIL with that loop, which is
what makes it the slower writer under load (``docs/PERFORMANCE.md``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
from collections.abc import Callable

from ...errors import LedgerError
from .sqlite_core import Answer, Executor, Op, split, unexpected

__all__ = ["DbThread", "Settle"]

#: Called on the sending loop with a batch's answers, or the error that failed them all.
Settle = Callable[[list[Answer] | LedgerError], None]
_Item = tuple[list[Op], Settle, asyncio.AbstractEventLoop]


class DbThread:
    """The one thread that owns the connection and applies queued batches."""

    def __init__(self, path: str, open_executor: Callable[[], Executor]) -> None:
        self.path = path
        self._open_executor = open_executor
        self._pid = os.getpid()
        self._executor: Executor | None = None
        self.opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="chutes-jobs-ledger", daemon=True)
        self._thread.start()

    @property
    def commits(self) -> int:
        """Write transactions committed so far."""
        return 0 if self._executor is None else self._executor.commits

    def submit(self, ops: list[Op], settle: Settle) -> None:
        """Queue a batch; ``settle`` gets its answers on the running loop."""
        if os.getpid() != self._pid:  # a child of os.fork: the thread is not there
            raise LedgerError(f"ledger {self.path} was opened by another process (before a fork)")
        self._queue.put((ops, settle, asyncio.get_running_loop()))

    def close(self) -> None:
        """Close the connection once every batch queued before is applied."""
        self._queue.put(None)

    async def wait_stopped(self) -> None:
        """Return once the connection is closed."""
        await asyncio.shield(asyncio.wrap_future(self.stopped))

    def _main(self) -> None:
        try:
            executor = self._open_executor()
        except BaseException as exc:
            self.opened.set_exception(exc)
            return
        self._executor = executor
        self.opened.set_result(None)
        try:
            self._serve(executor)
        finally:
            executor.conn.close()
            self.stopped.set_result(None)

    def _serve(self, executor: Executor) -> None:
        stop = False
        while not stop:
            items: list[_Item] = []
            item = self._queue.get()
            while item is not None:
                items.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = item is None
            if items:
                self._run(executor, items)

    def _run(self, executor: Executor, items: list[_Item]) -> None:
        ops = [op for item in items for op in item[0]]
        try:
            answers: list[Answer] | LedgerError = executor.run(ops)
        except Exception as exc:
            # Not an SQLite error (those are answered per op): a bug, or a warning turned
            # into an error. Fail this batch's callers and go on serving, so no caller waits
            # forever on a thread that died.
            executor.rollback()
            failure = LedgerError(f"ledger {self.path}: {unexpected(exc)}")
            failure.__cause__ = exc
            answers = failure
        cut: list[list[Answer] | LedgerError] = [answers] * len(items)
        if not isinstance(answers, LedgerError):
            cut = [*split(answers, [item[0] for item in items])]
        for (_, settle, loop), mine in zip(items, cut, strict=True):
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(settle, mine)
