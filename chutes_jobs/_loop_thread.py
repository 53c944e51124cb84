"""An asyncio event loop in a daemon thread, and blocking calls into it that Ctrl-C can stop.

:mod:`chutes_jobs.sync` runs each session's coroutines on one (the loop owns the session's
connections), and :func:`chutes_jobs.emulator.in_background` serves the emulator from one.

:meth:`LoopThread.run` blocks its thread until the coroutine has ended on the loop. Any number
of threads may call at once: their coroutines run concurrently on the loop. A thread that has
a running event loop of its own may call too (a Jupyter cell, a coroutine): that loop simply
waits, as it would for any blocking call, and nothing needs it meanwhile, so nothing deadlocks.
Only the loop's own thread may not call (a progress callback, a job function): it would wait
for itself, so :class:`~chutes_jobs.BlockingCallError` is raised instead.

Interrupts: when the waiting thread is interrupted (Ctrl-C raises ``KeyboardInterrupt`` in the
main thread while it waits), the coroutine's task is cancelled once, as ``asyncio.run`` would
cancel it, and waited for (up to :data:`CANCEL_WAIT` seconds; a second Ctrl-C stops waiting)
before the interrupt goes on. Its cleanup therefore runs to its end: a download keeps its
``.part``, ``submit_many`` records the creates under way and closes its ledger.

Why not ``anyio.from_thread.start_blocking_portal``: measured side by side
(``benchmarks/bench_sync.py``, calls interleaved), a portal call costs nearly three times as
much (a call doing no I/O: 223-229 against 81-83 us median on a shared 2-core machine): it hops
threads to spawn a task in the portal's task group, then back with the result, where this loop
is woken once. And a cancelled portal call is cancelled again at every ``await`` until it ends
(anyio's level cancellation), which cuts short the cleanup the library shields with
``asyncio.shield`` (``submit_many``'s shutdown) or runs after ``Task.uncancel``
(``run_and_report``'s reporting).
The price that stays is two thread wake-ups per call (the loop's, then the caller's, through a
:class:`~chutes_jobs._wakeup.Wakeup`), which the scheduler of a busy machine can delay.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, Final, Generic, TypeVar

from ._wakeup import Wakeup
from .errors import BlockingCallError

__all__ = ["CANCEL_WAIT", "LoopThread"]

logger = logging.getLogger("chutes_jobs")

T = TypeVar("T")

#: Seconds an interrupted call waits for its coroutine to clean up before the interrupt goes on.
CANCEL_WAIT: Final = 60.0
#: Seconds of cleanup after which the waiting is announced (with how to stop it).
_NOTICE_AFTER: Final = 1.0
#: Seconds :meth:`LoopThread.stop` waits for the thread to finish its loop's remaining tasks.
STOP_WAIT: Final = 10.0


class _End(enum.Enum):
    END = enum.auto()


class _Call(Generic[T]):
    """One coroutine handed to the loop: its task there, its outcome for the waiting thread.

    The task's own step hands the outcome over (no done-callback round on the loop), through a
    :class:`~chutes_jobs._wakeup.Wakeup`: the cheapest thing a thread can wait on and still be
    interrupted by a signal.
    """

    __slots__ = ("_cancelled", "_done", "_ended", "_error", "_result", "coro", "loop", "task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self._done = Wakeup()
        self._ended = False
        self._cancelled = False
        self._error: BaseException | None = None
        self._result: T | None = None

    # -- on the loop -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the coroutine as a task, unless the call was stopped first."""
        if self._ended:
            return
        self.task = asyncio.get_running_loop().create_task(self._drive())
        self.task.add_done_callback(self._ended_unstarted)

    async def _drive(self) -> None:
        try:
            self._result = await self.coro
        except asyncio.CancelledError:
            self._cancelled = True
            raise
        except BaseException as error:  # KeyboardInterrupt too: it is the caller's
            self._error = error
        finally:
            self._end()

    def _ended_unstarted(self, _: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never ran ``_drive``'s ``finally``."""
        if not self._ended:
            self.coro.close()
            self._cancelled = True
            self._end()

    def cancel(self) -> None:
        """Cancel the task once (its cleanup runs), or drop a call not started yet."""
        if self.task is not None:
            self.task.cancel()
        elif not self._ended:
            self.coro.close()
            self._cancelled = True
            self._end()

    def _end(self) -> None:
        self._ended = True
        self._done.set()

    # -- in the waiting thread -----------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    def wait(self, timeout: float = -1) -> bool:
        """Wait (interruptibly) until the call has ended; True if it has."""
        return self._done.wait(timeout)

    def outcome(self) -> T:
        """The result of an ended call, or its error raised (``CancelledError`` if cancelled).

        The waiting is over: the call's wakeup goes back to its pool.
        """
        self._done.close()
        if self._cancelled:
            raise concurrent.futures.CancelledError
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class LoopThread:
    """An event loop in a daemon thread named ``name``: started on first use, and again after
    :meth:`stop`. See the module docstring for how calls block and how interrupts stop them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the loop's thread is up (between the first call and :meth:`stop`)."""
        return self._loop is not None

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread."""
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    # -- blocking calls ----------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result (or raise its error), blocking.

        Raises :class:`~chutes_jobs.BlockingCallError` on the loop's own thread (``coro`` is
        closed unrun). Interrupted while waiting, it cancels the coroutine, waits for its
        cleanup (bounded) and re-raises the interrupt. A coroutine cancelled by :meth:`stop`
        raises ``concurrent.futures.CancelledError``.
        """
        call = _Call(coro)
        try:
            self._submit(call)
            call.wait()
        except BaseException:
            if call.loop is None:
                coro.close()  # never handed to the loop
            elif not call.ended:
                self._interrupt(call)
            raise
        return call.outcome()

    def iterate(self, agen: AsyncIterator[T]) -> Generator[T, None, None]:
        """Iterate ``agen`` on the loop, one blocking :meth:`run` per item.

        Closing the iterator (``close()``, or dropping it: CPython collects an iterator left
        by ``break`` at once) closes ``agen`` on the loop, so its cleanup runs there.
        """
        try:
            while (item := self.run(_next(agen))) is not _End.END:
                yield item
        finally:
            self._close(agen)

    def _submit(self, call: _Call[Any]) -> None:
        with self._lock:  # against stop(): a call is either before the loop's end, or after
            if self.in_loop_thread():
                raise BlockingCallError(
                    f"{_name(call.coro)} was called from the event loop thread of its "
                    "chutes_jobs.sync session (a progress, on_job or key callback, or a job "
                    "function), where waiting for it would deadlock: use the async API there "
                    "(session.aio, handle.aio) and await it"
                )
            if self._loop is None:
                self._start()
            assert self._loop is not None
            call.loop = self._loop
            self._loop.call_soon_threadsafe(call.start)

    def _interrupt(self, call: _Call[Any]) -> None:
        """Cancel ``call``'s task and wait (bounded) for it to end; a new interrupt stops it."""
        assert call.loop is not None
        try:
            call.loop.call_soon_threadsafe(call.cancel)
        except RuntimeError:  # the loop is gone: nothing runs there any more
            return
        if call.wait(_NOTICE_AFTER):
            return
        name = _name(call.coro)
        logger.warning(
            "interrupted: waiting up to %.0f s for %s to clean up (interrupt again to stop "
            "waiting)",
            CANCEL_WAIT,
            name,
        )
        if not call.wait(CANCEL_WAIT - _NOTICE_AFTER):
            logger.error(
                "%s did not stop within %.0f s: it goes on in the background", name, CANCEL_WAIT
            )

    def _close(self, agen: AsyncIterator[Any]) -> None:
        aclose: Callable[[], Awaitable[None]] | None = getattr(agen, "aclose", None)
        if aclose is None or not self.running:  # a stopped loop closed its async generators
            return
        if self.in_loop_thread():  # collected on the loop: close it there, without waiting
            asyncio.get_running_loop().create_task(_closing(aclose))
            return
        self.run(_closing(aclose))

    # -- the thread --------------------------------------------------------------------------

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_serve, args=(loop,), name=self.name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

    def stop(
        self, final: Callable[[], Awaitable[None]] | None = None, *, wait: bool = True
    ) -> None:
        """Run ``final()`` on the loop (errors logged), then stop it: the tasks still running
        are cancelled and waited for, async generators closed, the loop closed.

        With ``wait`` (and not on the loop's thread) this returns once the thread has ended, at
        most :data:`STOP_WAIT` seconds later. A later call starts a new loop.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            if loop is None or thread is None:
                return
            loop.call_soon_threadsafe(_stop_after, loop, final)
        if wait and thread is not threading.current_thread():
            thread.join(STOP_WAIT)


def _name(coro: Coroutine[Any, Any, Any]) -> str:
    return getattr(coro, "__qualname__", None) or repr(coro)


async def _next(agen: AsyncIterator[T]) -> T | _End:
    try:
        return await anext(agen)
    except StopAsyncIteration:
        return _End.END


async def _closing(aclose: Callable[[], Awaitable[None]]) -> None:
    await aclose()


def _stop_after(
    loop: asyncio.AbstractEventLoop, final: Callable[[], Awaitable[None]] | None
) -> None:
    """On the loop: run ``final`` as a task, then stop the loop (at once without one)."""
    if final is None:
        loop.stop()
        return

    async def finish() -> None:
        try:
            await final()
        except Exception:
            logger.exception("closing the event loop thread's resources failed")
        finally:
            loop.stop()

    loop.create_task(finish())


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The thread: run ``loop`` until stopped, then cancel what is left and close it."""
    asyncio.set_event_loop(loop)
    while True:
        try:
            loop.run_forever()
            break
        except BaseException:  # KeyboardInterrupt/SystemExit raised by code on the loop
            logger.exception("an exception escaped a task of the event loop thread")
    try:
        _cancel_remaining(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the loop's remaining tasks and let them clean up, as ``asyncio.run`` does."""
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
