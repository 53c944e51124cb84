"""The SQLite ledger's writer process: the connection lives in a second interpreter.

Why a process: a thread of this process would take the GIL from the event loop around every
SQLite call, and the two would queue for it (``docs/PERFORMANCE.md``, "The SQLite ledger").
The process is :mod:`.sqlite_core` run as a script with this interpreter (``sys.executable
-I -S``: isolated, no ``site``, no ``PYTHON*`` variables, nothing of the package imported,
so none of the caller's code runs again and it starts in tens of milliseconds). It runs in a
session of its own, so a Ctrl-C in the terminal reaches only the caller, which closes the
ledger; it exits when its input ends, after applying everything it has read, so it also ends
when its caller dies.

The event loop writes each batch of ops as one frame to the process's stdin (without
blocking: what the pipe does not take waits for it to drain) and reads the answers with
``loop.add_reader``. Calls come from the event loop that opened the ledger (any loop may close
it). A thread reaps the process, so one whose loop has ended leaves no zombie.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ...errors import LedgerError
from . import sqlite_core
from .sqlite_core import OK, Op, Statements, frame, unframe, write_all
from .sqlite_thread import Settle

__all__ = ["WriterProcess", "can_start"]

_CORE = sqlite_core.__file__
#: Popen objects of writers not yet reaped: kept so none is collected while it runs.
_RUNNING: set[subprocess.Popen[bytes]] = set()


def _close_inherited_pipes() -> None:
    """In a child made by ``os.fork`` (a ``multiprocessing`` pool, say): close the copies of
    the writers' pipes, so a writer still sees its input end when its caller closes the
    ledger, and the child can never write into it."""
    for proc in _RUNNING:
        _close_pipes_of(proc)


def _close_pipes_of(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError, ValueError):
            if pipe is not None:
                pipe.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_pipes)


def can_start() -> bool:
    """Whether a writer process can be started here: a Python interpreter to run (an
    application embedding Python may name its own program in ``sys.executable``), the core
    module as a file, and an event loop that watches pipes (not Windows')."""
    interpreter = os.path.basename(sys.executable).lower()
    return (
        interpreter.startswith(("python", "pypy")) and os.path.isfile(_CORE) and os.name == "posix"
    )


class WriterProcess:
    """The writer process of one ledger, driven from one event loop."""

    def __init__(self, path: str, proc: subprocess.Popen[bytes]) -> None:
        self.path = path
        self.commits = 0
        self._proc = proc
        self._pid = os.getpid()
        self._loop = asyncio.get_running_loop()
        assert proc.stdin is not None and proc.stdout is not None
        self._fd_in, self._fd_out = proc.stdin.fileno(), proc.stdout.fileno()
        #: Per frame sent and not answered: takes its answer frame, or the LedgerError failing it.
        self._pending: collections.deque[Callable[[Any], None]] = collections.deque()
        self._unsent = bytearray()
        self._received = bytearray()
        self._closing = False
        #: Set once the process has exited: what every later call fails with.
        self._gone: LedgerError | None = None
        #: Done once the process has exited (set from its reaper thread: awaitable anywhere).
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()

    @classmethod
    async def start(
        cls,
        path: str,
        *,
        create: bool,
        states: Sequence[str],
        statements: Statements,
        max_batch: int,
    ) -> WriterProcess:
        """Start the process and open the ledger in it; raises :class:`LedgerError` if the
        process cannot start or the file cannot be opened (its message)."""
        try:
            # A fork and exec of a few milliseconds, once per open: not worth a thread
            proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-I", "-S", _CORE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise LedgerError(
                f"cannot start the writer process of ledger {path} ({sys.executable}): {exc}; "
                "open it with writer='thread'"
            ) from exc
        _RUNNING.add(proc)
        writer = cls(path, proc)
        # Reaped by a thread, not the loop: a process whose loop has ended (an open cancelled
        # as asyncio.run returned) must not stay a zombie.
        threading.Thread(target=writer._reap, name="chutes-jobs-ledger-reaper", daemon=True).start()
        opened: asyncio.Future[Any] = writer._loop.create_future()
        writer._pending.append(opened.set_result)
        # Neither end ever blocks the loop: a frame larger than the pipe, or a process busy
        # writing its answers into a full pipe, must not stall the loop that reads them.
        os.set_blocking(writer._fd_in, False)
        os.set_blocking(writer._fd_out, False)
        writer._send(frame((path, create, list(states), statements, max_batch)))
        writer._loop.add_reader(writer._fd_out, writer._readable)
        try:
            answer = await asyncio.shield(opened)
        except asyncio.CancelledError:
            writer.close()
            raise
        if isinstance(answer, LedgerError):
            raise answer
        code, message = answer
        if code != OK:
            writer.close()
            await writer.wait_stopped()
            raise LedgerError(message)
        return writer

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop that drives the process: the only one the ledger can be used on."""
        return self._loop

    def submit(self, ops: list[Op], settle: Settle) -> None:
        """Send a batch, on this loop; ``settle`` gets its answers there (or the LedgerError
        failing them all: the process has exited). Raises ValueError for an op ``marshal``
        cannot encode, LedgerError in a child of ``os.fork``: nothing is sent then."""
        if self._gone is not None:
            self._loop.call_soon(settle, self._gone)
            return
        if os.getpid() != self._pid:
            raise LedgerError(f"ledger {self.path} was opened by another process (before a fork)")
        data = frame(ops)  # before queueing: a ValueError leaves nothing half-sent

        def answered(payload: Any) -> None:
            if isinstance(payload, LedgerError):
                return settle(payload)
            self.commits, answers = payload
            if isinstance(answers, str):  # the batch failed unexpectedly
                return settle(LedgerError(f"ledger {self.path}: {answers}"))
            settle(answers)

        self._pending.append(answered)
        self._send(data)

    def close(self) -> None:
        """End the process's input (once what is unsent has gone): it applies every batch
        sent, closes the file, exits. From another thread, the loop's own thread does it
        while that loop runs; once it has stopped, this call does, without reading answers."""
        if self._closing:
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is not self._loop and self._loop.is_running():
            with contextlib.suppress(RuntimeError):  # closed since: the branch below is moot
                self._loop.call_soon_threadsafe(self.close)
                return
        self._closing = True
        if current is not self._loop:
            self._close_unread()
        elif not self._unsent:
            self._close_input()

    def _close_unread(self) -> None:
        """Close from outside a loop that no longer runs: nobody will read the answers, so
        the output is closed first (the process applies the rest of its input unanswered),
        then what is unsent is written, waiting for the pipe, and the input closed."""
        self._loop.remove_reader(self._fd_out)  # a loop that runs again must not watch them
        self._loop.remove_writer(self._fd_in)
        with contextlib.suppress(OSError):
            self._proc.stdout.close()  # type: ignore[union-attr]
        if self._unsent and not self._proc.stdin.closed:  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                os.set_blocking(self._fd_in, True)
                write_all(self._fd_in, bytes(self._unsent))
            self._unsent.clear()
        self._close_input()

    async def wait_stopped(self) -> None:
        """Return once the process has closed the file and exited (on any event loop)."""
        await asyncio.shield(asyncio.wrap_future(self.stopped))

    # -- the pipes

    def _send(self, data: bytes) -> None:
        if self._proc.stdin is None or self._proc.stdin.closed:
            return  # the process is gone or going: _exited fails what is pending
        if self._unsent:
            self._unsent += data
            return
        try:
            sent = os.write(self._fd_in, data)
        except BlockingIOError:
            sent = 0
        except OSError:  # the process is gone: its output's end fails what is pending
            return
        if sent < len(data):
            self._unsent += data[sent:]
            self._loop.add_writer(self._fd_in, self._writable)

    def _writable(self) -> None:
        try:
            sent = os.write(self._fd_in, self._unsent)
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._unsent)
        del self._unsent[:sent]
        if not self._unsent:
            self._loop.remove_writer(self._fd_in)
            if self._closing:
                self._close_input()

    def _close_input(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]

    def _readable(self) -> None:
        try:
            data = os.read(self._fd_out, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._deliver(data)
        else:  # the process has exited, or is exiting: _exited follows
            self._loop.remove_reader(self._fd_out)

    def _deliver(self, data: bytes) -> None:
        self._received += data
        for payload in unframe(self._received):
            answered = self._pending.popleft()
            try:
                answered(payload)
            except Exception as exc:  # a bug: the other answers must still be delivered
                self._loop.call_exception_handler(
                    {"message": f"ledger {self.path}: an answer failed", "exception": exc}
                )

    def _reap(self) -> None:
        """In a thread of its own: wait for the process to exit, then tell the loop."""
        status = self._proc.wait()
        _RUNNING.discard(self._proc)
        try:
            self._loop.call_soon_threadsafe(self._exited, status)
        except RuntimeError:  # the loop is closed: nobody can be waiting on it
            self._close_pipes()
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.stopped.set_result(None)

    def _exited(self, status: int) -> None:
        """On the loop, once the process has exited: take the answers it left in the pipe,
        then fail whoever still waits, and every later call."""
        if not self._proc.stdout.closed:  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                while data := os.read(self._fd_out, 1 << 20):
                    self._deliver(data)
            self._loop.remove_reader(self._fd_out)
        if not self._proc.stdin.closed:  # type: ignore[union-attr]
            self._loop.remove_writer(self._fd_in)
        self._close_pipes()
        self._gone = LedgerError(f"ledger {self.path}: its writer process exited (status {status})")
        while self._pending:
            self._pending.popleft()(self._gone)

    def _close_pipes(self) -> None:
        self._closing = True
        self._unsent.clear()
        _close_pipes_of(self._proc)
