"""The upload body: ``multipart/form-data`` streamed from disk with a known length.

Why 1 MiB reads overlapping the socket writes (measured): ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload, StringPayload

from ..errors import IncompleteTransferError
from .progress import ProgressCallback, ProgressThrottle
from .threads import acquire_in_thread

__all__ = ["UPLOAD_CHUNK", "FilePayload", "multipart_upload_body"]

#: Upload file reads, one ``os.read`` per chunk in a worker thread.
UPLOAD_CHUNK = 1024 * 1024


class FilePayload(Payload):
    """A file streamed from disk as a body of known size (so ``Content-Length`` is sent).

    Reads run in a worker thread, :data:`UPLOAD_CHUNK` at a time, the next read overlapping
    the socket write of the current chunk; memory stays at about two chunks. The file is
    opened when the body is written, so a retry that builds a new payload re-reads it.
    Exactly the ``size`` bytes measured at construction are sent; a file that shrank
    meanwhile raises :class:`IncompleteTransferError`.
    """

    def __init__(
        self,
        source: Path,
        *,
        filename: str,
        progress: ProgressCallback | None = None,
        progress_name: str | None = None,
        chunk_size: int = UPLOAD_CHUNK,
        **kwargs: Any,
    ) -> None:
        super().__init__(source, content_type="application/octet-stream", **kwargs)
        self._source = source
        self._size = source.stat().st_size
        self._chunk_size = chunk_size
        self._progress = progress
        self._progress_name = progress_name or filename
        self.set_content_disposition("form-data", name="file", filename=filename)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file payload is streamed, not decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        """Stream the file into ``writer``."""
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        """Stream at most ``content_length`` bytes (all ``size`` bytes when ``None``)."""
        size = self._size if self._size is not None else 0
        limit = size if content_length is None else min(size, content_length)
        tracker = ProgressThrottle(self._progress, self._progress_name, size, 0)
        fd = await acquire_in_thread(functools.partial(_open_source, self._source), os.close)
        reading = self._read_next(fd, 0, limit)
        try:
            while reading is not None:
                chunk = await asyncio.shield(reading)  # shielded: see PartWriter.flush
                if not chunk:
                    raise IncompleteTransferError(
                        f"{self._source} shrank to {tracker.done} bytes while uploading {size}"
                    )
                reading = self._read_next(fd, tracker.done + len(chunk), limit)
                await writer.write(chunk)  # the next read runs meanwhile
                tracker.advance(len(chunk))
        finally:
            _close_after(reading, fd)
        tracker.finish()

    def _read_next(self, fd: int, pos: int, limit: int) -> asyncio.Future[bytes] | None:
        if pos >= limit:
            return None
        n = min(self._chunk_size, limit - pos)
        return asyncio.get_running_loop().run_in_executor(None, os.read, fd, n)


def _open_source(source: Path) -> int:
    return os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def _close_after(pending: asyncio.Future[bytes] | None, fd: int) -> None:
    """Close ``fd`` now, or once the read still running on it is done."""
    if pending is None or pending.done():
        os.close(fd)
        return

    def close(future: asyncio.Future[bytes]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: nobody awaits this read any more
        os.close(fd)

    pending.add_done_callback(close)


def multipart_upload_body(
    source: Path, name: str, *, progress: ProgressCallback | None = None
) -> aiohttp.MultipartWriter:
    """The upload body: ``multipart/form-data`` with exactly the parts ``file`` and ``path``.

    ``file`` carries the bytes of ``source`` (``application/octet-stream``, with the base name
    of ``name`` as its filename) streamed from disk; ``path`` carries ``name``, the relative
    output filename. The size is known up front, so aiohttp sends ``Content-Length``. Build a
    new body for every attempt: it opens the file when it is sent.
    """
    body = aiohttp.MultipartWriter("form-data")
    body.append_payload(
        FilePayload(
            source, filename=PurePosixPath(name).name, progress=progress, progress_name=name
        )
    )
    path_part = StringPayload(name)
    path_part.set_content_disposition("form-data", name="path")
    body.append_payload(path_part)
    return body
