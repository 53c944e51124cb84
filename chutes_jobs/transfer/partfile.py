"""Writing a download's body into its partial file: batches written behind in a worker thread.

The file itself (opening, ownership, publication) is :mod:`.partial`'s; this module only
appends bytes to it. Why the writes are batched and written behind: ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Final

from .threads import ThreadJobs

__all__ = ["PartWriter"]

MIB: Final = 1024 * 1024
#: Written ranges go to the kernel's writeback at once and leave the page cache once this far
#: behind the end of the file (``posix_fadvise``, where there is one); 0 leaves both alone.
WRITE_BEHIND = 8 * MIB


class PartWriter:
    """Appends batches of chunks to an open file in a worker thread, one write in flight.

    Behind the writes, the written ranges are handed to the kernel's writeback and, once
    :data:`WRITE_BEHIND` behind, dropped from the page cache: the file's dirty pages stay
    few (the final fsync has little left to do) and the same few pages are recycled instead
    of a GiB of cache being filled per GiB downloaded.
    """

    def __init__(self, fd: int, jobs: ThreadJobs, position: int) -> None:
        self._fd = fd
        self._jobs = jobs
        #: Where the next byte goes: the file's size once every submitted batch is written.
        self.position = position
        self._pending: asyncio.Future[None] | None = None
        self._dropped = position  # the page cache before this offset was let go already

    async def submit(self, chunks: list[bytes]) -> None:
        """Wait for the previous write, then start writing ``chunks`` (returns at once)."""
        await self.flush()
        start = self.position
        self.position += sum(map(len, chunks))
        self._pending = self._jobs.start(self._write, chunks, start, self.position)

    def _write(self, chunks: list[bytes], start: int, end: int) -> None:
        """The thread job: write ``chunks`` (the range ``start``-``end``), then write behind."""
        _write_all(self._fd, chunks)
        if WRITE_BEHIND > 0 and _fadvise is not None:
            with contextlib.suppress(OSError):  # advice only (EINVAL, ESPIPE, ...)
                _fadvise(self._fd, start, end - start, _DONTNEED)  # starts its writeback
                drop_to = end - WRITE_BEHIND  # long written back: let the cache go
                if drop_to > self._dropped:
                    _fadvise(self._fd, self._dropped, drop_to - self._dropped, _DONTNEED)
                    self._dropped = drop_to

    async def flush(self) -> None:
        """Wait until every submitted chunk is in the file (a failed write raises here)."""
        if self._pending is not None:
            # shielded: a cancellation must not mark the write done while its thread still
            # runs (the partial is closed only after it, see ThreadJobs)
            await asyncio.shield(self._pending)
            self._pending = None

    async def settle(self) -> None:
        """Wait until the write in flight, if any, has ended, whatever its outcome."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # its error, if any, is not the one to report now


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """``os.writev`` until every byte of ``chunks`` is written (handles short writes)."""
    if not hasattr(os, "writev"):  # Windows
        chunks = [b"".join(chunks)]
    views = [memoryview(c) for c in chunks]
    while views:
        written = os.writev(fd, views[:_IOV_MAX]) if len(views) > 1 else os.write(fd, views[0])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


_fadvise = getattr(os, "posix_fadvise", None)  # not on Windows / macOS
_DONTNEED: int = getattr(os, "POSIX_FADV_DONTNEED", 4)


def _iov_max() -> int:
    try:
        return max(16, os.sysconf("SC_IOV_MAX"))
    except (AttributeError, ValueError, OSError):
        return 16


_IOV_MAX = _iov_max()
