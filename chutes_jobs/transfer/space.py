"""Free space for downloads: a file that cannot fit fails before its first byte is written.

Before a body is written, the bytes it still needs are compared with the filesystem's free
space minus what the other downloads of this process still need on it (each one's announced
size less what it wrote). So of several files that cannot all fit, the ones that fit land and
the others fail at once, instead of all of them filling the disk together. Another process's
downloads are not counted; a disk that fills up anyway fails the write with ``ENOSPC``, which
``partial.py`` reports the same way.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from ..errors import InsufficientSpaceError

__all__ = ["NO_SPACE_ERRNOS", "RESERVATIONS", "Reservations", "free_bytes"]

#: A write or fsync failing with one of these ran out of space (a quota counts).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_bytes(fd: int) -> int:
    """Bytes an unprivileged writer may still use on ``fd``'s filesystem."""
    stats = os.fstatvfs(fd)
    return stats.f_bavail * stats.f_frsize


class Reservations:
    """The bytes the downloads of this process still need, per filesystem (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._needs: dict[int, dict[int, Callable[[], int]]] = {}

    def reserve(
        self,
        fd: int,
        key: int,
        needed: int,
        still_needed: Callable[[], int],
        *,
        filename: str,
        folder: str,
    ) -> None:
        """Claim ``needed`` bytes for the download ``key`` writing to ``fd``, or raise
        :class:`InsufficientSpaceError`. ``still_needed()`` tells, from then on, how many of
        them it has not written yet. Blocking (``fstatvfs``): call it in a thread."""
        device = os.fstat(fd).st_dev
        free = free_bytes(fd)
        with self._lock:
            needs = self._needs.setdefault(device, {})
            promised = sum(max(0, need()) for owner, need in needs.items() if owner != key)
            available = max(0, free - promised)
            if needed > available:
                raise InsufficientSpaceError(filename, folder, needed, available)
            needs[key] = still_needed

    def release(self, key: int) -> None:
        """Forget what the download ``key`` needed (it ended)."""
        with self._lock:
            for needs in self._needs.values():
                needs.pop(key, None)


#: The process's reservations (downloads of every session share the disks).
RESERVATIONS = Reservations()
