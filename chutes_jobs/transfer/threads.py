"""Blocking file work in worker threads that a cancellation can neither leak nor cut short.

``asyncio.to_thread`` cannot stop its thread: a task cancelled while a thread opens a file gets
``CancelledError`` at once, and the descriptor opened a moment later belongs to nobody. Every
thread call that acquires something goes through :func:`acquire_in_thread`; every thread job
on an open descriptor goes through :class:`ThreadJobs`, so the descriptor is closed only once
the job using it has ended.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ThreadJobs", "acquire_in_thread"]

T = TypeVar("T")


async def acquire_in_thread(acquire: Callable[[], T], release: Callable[[T], object]) -> T:
    """``acquire()`` run in a worker thread; its result is released if the caller is cancelled.

    The thread always runs to its end; when the awaiting task was cancelled meanwhile,
    ``release(result)`` runs (in the event loop's thread) as soon as the thread returns, and
    the cancellation propagates. An exception of ``acquire`` is raised as is.
    """
    future = asyncio.get_running_loop().run_in_executor(None, acquire)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(functools.partial(_release_late, release))
        raise


def _release_late(release: Callable[[Any], object], future: asyncio.Future[Any]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    release(future.result())


class ThreadJobs:
    """Thread jobs on one resource, one at a time, and a close that waits for the last one.

    A job is never cut short by a cancellation of its caller (the caller gets
    ``CancelledError``, the thread finishes), so :meth:`close` never pulls a descriptor from
    under a running ``write`` or ``fsync``.
    """

    def __init__(self) -> None:
        self._last: asyncio.Future[Any] | None = None

    def start(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn(*args)`` in a thread (the previous job must be done) and return its future."""
        if self._last is not None and not self._last.done():
            raise RuntimeError("a thread job is still running on this resource")
        future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._last = future
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a thread and return its result (see the class docstring)."""
        return await asyncio.shield(self.start(fn, *args))

    async def wait(self) -> None:
        """Wait until the last job ended; its outcome is the caller's who started it."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])

    def close(self, release: Callable[[], object]) -> None:
        """``release()`` now, or once the job still running ends (never during it)."""
        last, self._last = self._last, None
        if last is None or last.done():
            release()
            return

        def after(future: asyncio.Future[Any]) -> None:
            if not future.cancelled():
                future.exception()  # retrieved: its caller is gone
            release()

        last.add_done_callback(after)
