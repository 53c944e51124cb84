"""How a thread waiting for a call on the event loop thread is woken: :class:`Wakeup`.

The loop thread sets a call's wakeup once, when the call ends; the calling thread waits for it.
Where the OS has eventfd (Linux), the wakeup is an eventfd: ``os.eventfd_write`` lets go of the
GIL before it wakes the waiting thread, which can therefore run at once. A lock's ``release``
wakes it while the loop thread still holds the GIL: the woken thread goes back to sleep until
the loop thread blocks, and is woken a second time then. Measured side by side
(``benchmarks/bench_sync.py``, calls interleaved, a shared 2-core VM where waking a thread on
the other core costs 20-40 us), a call doing no I/O costs about a quarter less this way.

Eventfds are reused, so a call makes no system call to get one: a free list, at most
:data:`MAX_EVENTFDS` open at once (calls beyond that wait on a lock, as do calls where the OS
has no eventfd). A child process made by ``fork`` leaves the inherited ones alone (its
parent's threads still use them) and starts a pool of its own.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import Final

__all__ = ["MAX_EVENTFDS", "Wakeup"]

#: Eventfds open at most (the free ones included): the calls waiting at the same time that
#: get one; further calls wait on a lock.
MAX_EVENTFDS: Final = 64
#: Seconds between checks for Ctrl-C while waiting on a lock where its wait is not interrupted.
_WAIT_SLICE: Final = 0.1


class _Pool:
    """The eventfds not in use, and how many are open."""

    def __init__(self) -> None:
        self.free: list[int] = []
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        """A free eventfd (its count 0), a new one, or -1 when :data:`MAX_EVENTFDS` are open."""
        try:
            return self.free.pop()  # atomic: no lock on the way of every call
        except IndexError:
            pass
        with self._lock:
            if self.open >= MAX_EVENTFDS:
                return -1
            self.open += 1
        try:
            return os.eventfd(0)  # close-on-exec
        except OSError:  # out of file descriptors: a lock does as well
            self.discard(-1)
            return -1

    def discard(self, fd: int) -> None:
        """Close ``fd`` (one whose count may be above 0: it cannot be reused)."""
        if fd >= 0:
            os.close(fd)
        with self._lock:
            self.open -= 1


_pool = _Pool()


def _new_pool_after_fork() -> None:
    global _pool
    _pool = _Pool()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_new_pool_after_fork)

_HAS_EVENTFD: Final = hasattr(os, "eventfd")


class Wakeup:
    """Set once by one thread (:meth:`set`), waited for by another (:meth:`wait`), then
    :meth:`close`-d by the waiter (its eventfd goes back to the pool)."""

    __slots__ = ("_consumed", "_fd", "_lock", "_pool")

    def __init__(self) -> None:
        self._pool = _pool
        self._fd = self._pool.take() if _HAS_EVENTFD else -1
        self._consumed = False
        if self._fd < 0:
            self._lock = threading.Lock()
            self._lock.acquire()

    def set(self) -> None:
        """Wake the waiter (at most once per wakeup)."""
        if self._fd >= 0:
            os.eventfd_write(self._fd, 1)
        else:
            self._lock.release()

    def wait(self, timeout: float = -1) -> bool:
        """Wait until set, at most ``timeout`` seconds (forever when negative); True if set.

        Interruptible: a signal handler's exception (Ctrl-C's ``KeyboardInterrupt``) is raised.
        """
        if self._consumed:
            return True
        if self._fd < 0:
            return self._wait_lock(timeout)
        if timeout >= 0 and not select.select([self._fd], [], [], timeout)[0]:
            return False
        os.eventfd_read(self._fd)  # the count goes back to 0: the eventfd can be reused
        self._consumed = True
        return True

    def _wait_lock(self, timeout: float) -> bool:
        if timeout < 0 and sys.platform == "win32":
            # A lock wait is interrupted by Ctrl-C on POSIX only: elsewhere, wait in slices.
            while not self._lock.acquire(timeout=_WAIT_SLICE):
                pass
        elif not self._lock.acquire(timeout=timeout):
            return False
        self._lock.release()  # stays open for any later look
        return True

    def close(self) -> None:
        """The waiter is done: a set and waited-for eventfd goes back to the pool.

        One not waited for is closed only when this wakeup is collected, since its setter may
        still write to it (the setter keeps the wakeup alive until then).
        """
        if self._consumed and self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._pool.free.append(fd)

    def __del__(self) -> None:
        if self._fd >= 0:
            self._pool.discard(self._fd)
