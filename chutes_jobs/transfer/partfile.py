"""The ``.part`` file of a download: written behind in a worker thread, then finalized.

Nothing is ever written under the final name until :func:`finalize`, so a failed or cancelled
download leaves no file there. It may leave ``name.part``: its bytes are a verified prefix of
the body (written in order, the in-flight write awaited before closing), which is what the next
attempt resumes from with ``Range``. Why the writes are batched and written behind:
``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from pathlib import Path
from typing import Final

from ..errors import IncompleteTransferError

__all__ = [
    "PART_SUFFIX",
    "PartWriter",
    "check_complete",
    "finalize",
    "part_path_for",
    "range_header_for",
    "requested_offset",
]

MIB: Final = 1024 * 1024
#: Written ranges go to the kernel's writeback at once and leave the page cache once this far
#: behind the end of the file (``posix_fadvise``, where there is one); 0 leaves both alone.
WRITE_BEHIND = 8 * MIB
PART_SUFFIX: Final = ".part"


def part_path_for(dest: Path) -> Path:
    """The partial file a download of ``dest`` is written to: ``dest`` + ``.part``."""
    return dest.with_name(dest.name + PART_SUFFIX)


def range_header_for(part_path: Path) -> dict[str, str]:
    """``{"Range": "bytes=N-"}`` when ``part_path`` holds N > 0 bytes, else ``{}``."""
    try:
        size = part_path.stat().st_size
    except FileNotFoundError:
        return {}
    return {"Range": f"bytes={size}-"} if size > 0 else {}


def requested_offset(headers: dict[str, str]) -> int:
    """The offset a ``Range`` header from :func:`range_header_for` asked for (0 if none)."""
    value = headers.get("Range", "")
    return int(value[len("bytes=") : -1]) if value.startswith("bytes=") else 0


class PartWriter:
    """Appends batches of chunks to an open file in a worker thread, one write in flight.

    Behind the writes, the written ranges are handed to the kernel's writeback and, once
    :data:`WRITE_BEHIND` behind, dropped from the page cache: the file's dirty pages stay
    few (the final fsync has little left to do) and the same few pages are recycled instead
    of a GiB of cache being filled per GiB downloaded.
    """

    def __init__(self, fd: int, position: int) -> None:
        self._fd = fd
        self.position = position
        self._pending: asyncio.Future[None] | None = None
        self._dropped = position  # the page cache before this offset was let go already

    @classmethod
    async def open(cls, part_path: Path, offset: int) -> PartWriter:
        fd = await asyncio.to_thread(_open_part, part_path, offset)
        return cls(fd, offset)

    async def submit(self, chunks: list[bytes]) -> None:
        """Wait for the previous write, then start writing ``chunks`` (returns at once)."""
        await self.flush()
        start = self.position
        self.position += sum(map(len, chunks))
        self._pending = asyncio.get_running_loop().run_in_executor(
            None, self._write, chunks, start, self.position
        )

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
        """Wait until every submitted chunk is in the file."""
        if self._pending is not None:
            # shielded: a cancellation must not mark the write done while its thread still
            # runs, or close() would close the file under it
            await asyncio.shield(self._pending)
            self._pending = None

    async def close(self) -> None:
        """Close the file once the write in flight is done, even when cancelled meanwhile.

        The close itself runs in a thread too: ext4 flushes a file on close after it was
        truncated (``auto_da_alloc``), which measured 40-60 ms for 256 MiB.
        """
        pending, self._pending = self._pending, None
        loop = asyncio.get_running_loop()
        fd = self._fd
        if pending is None or pending.done():
            await asyncio.shield(loop.run_in_executor(None, os.close, fd))
            return
        pending.add_done_callback(lambda _: loop.run_in_executor(None, os.close, fd))
        with contextlib.suppress(Exception):  # its error, if any, is not the one to report
            await asyncio.shield(pending)


def _open_part(part_path: Path, offset: int) -> int:
    """Open the ``.part`` for writing at ``offset``, dropping anything after it."""
    part_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(part_path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    try:
        size = os.fstat(fd).st_size
        if size < offset:
            raise ValueError(f"{part_path} holds {size} bytes, cannot resume at {offset}")
        if size > offset:
            os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def check_complete(part_path: Path, expected_total: int | None) -> None:
    """Raise :class:`IncompleteTransferError` unless ``part_path`` holds ``expected_total``
    bytes (no check when the server did not announce a size)."""
    if expected_total is None:
        return
    size = part_path.stat().st_size
    if size != expected_total:
        raise IncompleteTransferError(
            f"{part_path.name}: {size} bytes received, the server announced {expected_total}"
        )


async def finalize(
    part_path: Path, dest: Path, *, overwrite: bool = False, fsync: bool = True
) -> Path:
    """Move a complete ``.part`` to ``dest`` atomically and return ``dest``.

    With ``fsync`` (the default) the data is flushed to disk before the rename and the folder
    after it, so a crash cannot leave a truncated file under the final name; after a
    :func:`stream_to_part` (which writes behind) it cost ~1 ms per GiB here, 0.27 s for data
    left in the page cache (``benchmarks/bench_download.py`` measures it). Without
    ``overwrite`` an existing ``dest`` is never replaced: :class:`FileExistsError`, and the
    ``.part`` is kept. Runs in a worker thread.
    """
    await asyncio.to_thread(_finalize_sync, part_path, dest, overwrite, fsync)
    return dest


def _finalize_sync(part_path: Path, dest: Path, overwrite: bool, fsync: bool) -> None:
    if fsync:
        fd = os.open(part_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if overwrite:
        os.replace(part_path, dest)
    else:
        _rename_no_clobber(part_path, dest)
    if fsync:
        _fsync_dir(dest.parent)


def _rename_no_clobber(src: Path, dest: Path) -> None:
    """Rename refusing an existing ``dest`` atomically where hard links work."""
    try:
        os.link(src, dest)  # fails with FileExistsError if dest exists, atomically
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, "destination exists (overwrite=False)", str(dest)
        ) from None
    except OSError:  # no hard links here (some FUSE/SMB mounts): check, then replace
        if dest.exists():
            raise FileExistsError(
                errno.EEXIST, "destination exists (overwrite=False)", str(dest)
            ) from None
        os.replace(src, dest)
        return
    os.unlink(src)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (Windows)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
