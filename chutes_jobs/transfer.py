"""Streaming file transfer: downloads into ``name.part`` then an atomic rename, multipart uploads.

These are the session-independent pieces; ``job.py`` wires them to a session and a retry
policy. One download attempt is::

    headers = range_header_for(part)                  # {"Range": "bytes=N-"} when resuming
    (send the GET with these headers, get a 2xx response)
    offset = resume_offset(response, requested)       # N on a matching 206, 0 on 200 (restart)
    total = expected_total(response, offset)          # Content-Range total / Content-Length
    await stream_to_part(response, part, offset=offset, filename=name, progress=cb)
    check_complete(part, total)                       # IncompleteTransferError when short
    await finalize(part, dest, overwrite=False)       # fsync + atomic rename

Nothing is ever written under the final name until :func:`finalize`, so a failed or cancelled
download leaves no file there. It may leave ``name.part``: its bytes are a verified prefix of
the body (written in order, the in-flight write awaited before closing), which is what the next
attempt resumes from with ``Range``.

Download strategy (1 GiB to ext4, loopback, 2 shared noisy cores; medians of 5 interleaved
runs). The body is read with ``readchunk`` (each piece as received; ``readany`` joins what is
buffered, a copy), asyncio's socket reads raised from 256 KiB to 1 MiB while it streams, the
per-response buffer to 1 MiB; pieces are gathered into 2 MiB batches, one ``os.writev``
thread job each, one in flight while the next fills. Behind the writes, each written range
goes to writeback (``posix_fadvise(DONTNEED)`` starts it) and is dropped from the page cache
8 MiB later. That last step is the big one here: filling the page cache with fresh pages
costs up to ~2 CPU-s per GiB on this VM (``copy_folio_from_iter_atomic``), where recycling
a few MiB of pages costs ~0.25, and the final fsync finds almost nothing left to write
(0.27 s -> 0.001 s per GiB). Before -> after (MB/s, CPU-s/GiB; x = ratio to a naive
``iter_chunked(1 MiB)`` + aiofiles client run alongside, which does not fsync):

* ``bench_job_download.py`` (emulator, ``JobHandle.download``): fsync on 369 (0.38x, 1.96)
  -> 954 (1.79x, 0.89); fsync off 827 (0.86x) -> 921 (1.72x); RSS growth ~12 MiB, longest
  loop stall 8 ms.
* ``bench_download.py`` (raw): fsync on 449 (0.61x, 1.40) -> 814 (1.32x, 0.88); a rerun with
  naive placed after page-cache-heavy runs: 844 vs naive 911-919 (0.92x, 0.99 vs 1.02).
  Without write-behind (``--matrix``) the same path falls to ~410 (1.9 CPU-s/GiB).
* Run-to-run spread is +-30-50%, so the naive client swings between 0.9x and 1.8x of us;
  the CPU floor is the kernel's copies (socket, parser slice, page cache): reading into
  nothing costs 0.3-0.45 CPU-s/GiB, so the 0.7 target is not reached with a disk write.
* Within noise (not taken): 1 MiB batches, one thread job per piece, 2-4 writes in flight
  on a dedicated thread, a 256 KiB buffer; 4+ MiB batches cost RSS.

On a disk slower than the network, write-behind paces the download at the disk's speed
from the start, which the default fsync pays at the end anyway.

fsync: :func:`finalize` fsyncs by default, the price of a file that survives a crash intact
under its final name; with write-behind it costs ~1 ms per GiB here (0.27 s without).
``fsync=False`` opts out.

Upload strategy: :class:`FilePayload` has a known size, so aiohttp sends ``Content-Length``
(an async-generator body falls back to chunked encoding, ~25% slower). The file is read with
``os.read`` in a worker thread, 1 MiB at a time, the next read running while the current
chunk is written to the socket. ``bench_upload.py --matrix`` (1 GiB, median / best of 5, MB/s):
1 MiB chunks 2432 / 2720, 256 KiB 1437 / 1932, 4 MiB 1682 / 1804; aiohttp.FormData over an open
file (64 KiB reads) 1562 / 1725; async-generator body (chunked) 1554 / 2284; curl -F 1681 / 3245.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import attrs
from aiohttp import hdrs
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload, StringPayload

from ._paths import safe_destination
from .errors import IncompleteTransferError, RequestTimeoutError, TransportError

__all__ = [
    "FilePayload",
    "ProgressCallback",
    "TransferProgress",
    "check_complete",
    "expected_total",
    "finalize",
    "multipart_upload_body",
    "part_path_for",
    "range_header_for",
    "requested_offset",
    "resume_offset",
    "safe_destination",
    "stream_to_part",
]

MIB = 1024 * 1024
#: aiohttp buffers up to twice this per response before pausing the socket.
READ_BUFFER = 1 * MIB
#: Bytes asyncio asks the socket for per read while a body streams (its default: 256 KiB).
SOCKET_READ = 1 * MIB
#: Received chunks are gathered up to this size and written by one thread job (``os.writev``).
WRITE_BATCH = 2 * MIB
#: Written ranges go to the kernel's writeback at once and leave the page cache once this far
#: behind the end of the file (``posix_fadvise``, where there is one); 0 leaves both alone.
WRITE_BEHIND = 8 * MIB
#: Upload file reads, one ``os.read`` per chunk in a worker thread.
UPLOAD_CHUNK = 1 * MIB
#: Progress callbacks fire at most once per this many bytes (plus a final call).
PROGRESS_STEP = 1 * MIB
PART_SUFFIX = ".part"

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@attrs.frozen
class TransferProgress:
    """How far one file transfer has got: ``done`` of ``total`` bytes (``None``: unknown)."""

    filename: str
    done: int
    total: int | None


#: Called with each progress snapshot; it runs on the event loop, so it must be quick.
ProgressCallback = Callable[[TransferProgress], None]


class _Progress:
    """Throttles a :data:`ProgressCallback` to one call per :data:`PROGRESS_STEP` bytes."""

    def __init__(
        self, callback: ProgressCallback | None, filename: str, total: int | None, done: int
    ) -> None:
        self._callback = callback
        self._filename = filename
        self._total = total
        self.done = done
        self._reported = done

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self._callback is not None and self.done - self._reported >= PROGRESS_STEP:
            self._report()

    def finish(self) -> None:
        if self._callback is not None:
            self._report()

    def _report(self) -> None:
        self._reported = self.done
        assert self._callback is not None
        self._callback(TransferProgress(self._filename, self.done, self._total))


# ----------------------------------------------------------------------------- download


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


def resume_offset(response: aiohttp.ClientResponse, requested_offset: int) -> int:
    """Where this response's body goes in the ``.part`` file.

    ``requested_offset`` on a 206 whose ``Content-Range`` starts there; 0 (restart from the
    beginning) on a 200 or on anything inconsistent. :func:`stream_to_part` refuses a 206 body
    that does not start at the offset it is given, so a bad range is never spliced in.
    """
    if response.status == 206 and requested_offset > 0:
        return requested_offset if _range_start(response) == requested_offset else 0
    return 0


def expected_total(response: aiohttp.ClientResponse, offset: int) -> int | None:
    """The full file size the response announces (``None`` when it does not say).

    A 206 gives it in ``Content-Range`` (``bytes a-b/*``: ``offset`` + ``Content-Length``; no
    parsable ``Content-Range``: ``None``); a 200 in ``Content-Length``. A content-encoded body
    (decompressed by aiohttp) has no usable length.
    """
    if response.headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity":
        return None
    length = response.content_length
    if response.status != 206:
        return length
    parsed = _content_range(response)
    if parsed is None:
        return None
    if parsed[2] is not None:
        return parsed[2]
    return None if length is None else offset + length


def _range_start(response: aiohttp.ClientResponse) -> int | None:
    parsed = _content_range(response)
    return None if parsed is None else parsed[0]


def _content_range(response: aiohttp.ClientResponse) -> tuple[int, int, int | None] | None:
    match = _CONTENT_RANGE.match(response.headers.get(hdrs.CONTENT_RANGE, ""))
    if match is None:
        return None
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), int(match[2]), total


async def stream_to_part(
    response: aiohttp.ClientResponse,
    part_path: Path,
    *,
    offset: int,
    filename: str,
    progress: ProgressCallback | None = None,
) -> int:
    """Write the response body into ``part_path`` from ``offset``; return the file's size.

    ``offset`` 0 truncates the file; otherwise the body is appended after the first
    ``offset`` bytes (the file must hold at least that many). Disk writes run in a worker
    thread, batched (see the module docstring), so the event loop never waits on the disk.
    A 206 whose ``Content-Range`` does not start at ``offset`` is refused: the file is
    truncated and :class:`IncompleteTransferError` raised, so the next attempt restarts.
    Connection failures mid-body raise :class:`IncompleteTransferError` /
    :class:`TransportError` / :class:`RequestTimeoutError`; whatever arrived before stays in
    the ``.part`` for a resume. ``progress`` gets throttled snapshots and a final one.
    """
    bad_range = response.status == 206 and _range_start(response) != offset
    tracker = _Progress(progress, filename, expected_total(response, offset), offset)
    writer = await _PartWriter.open(part_path, 0 if bad_range else offset)
    try:
        if bad_range:
            raise _transport_error(
                IncompleteTransferError,
                f"{filename}: server answered {response.headers.get(hdrs.CONTENT_RANGE)!r} "
                f"to a request from byte {offset}; restarting from zero",
                response,
            )
        await _pump(response, writer, tracker, filename)
        await writer.flush()
    finally:
        await writer.close()
    tracker.finish()
    return writer.position


async def _pump(
    response: aiohttp.ClientResponse, writer: _PartWriter, tracker: _Progress, filename: str
) -> None:
    """Move the body into ``writer`` in batches, one thread write in flight at a time."""
    content = response.content
    set_chunk = getattr(content, "set_read_chunk_size", None)  # aiohttp >= 3.13
    if set_chunk is not None:
        set_chunk(READ_BUFFER)
    batch: list[bytes] = []
    batched = 0
    try:
        with _socket_reads_of(response, SOCKET_READ):
            while chunk := await _read_some(content, response, filename):
                batch.append(chunk)
                batched += len(chunk)
                tracker.advance(len(chunk))
                if batched >= WRITE_BATCH:
                    await writer.submit(batch)
                    batch, batched = [], 0
    except TransportError:
        # what arrived before the failure is a verified prefix: keep it for the resume
        rest = _take_buffered(content)
        tracker.advance(sum(map(len, rest)))
        if batch or rest:
            await writer.submit(batch + rest)
        await writer.flush()
        raise
    if batch:
        await writer.submit(batch)


async def _read_some(
    content: aiohttp.StreamReader, response: aiohttp.ClientResponse, filename: str
) -> bytes:
    """The next piece of the body as aiohttp received it (``b""`` at the end).

    ``readchunk()`` hands over one buffered piece as is, where ``readany()`` joins all the
    buffered pieces into a new ``bytes`` (a copy per batch). aiohttp's failures are mapped
    to the library's errors.
    """
    try:
        while True:
            chunk, end_of_http_chunk = await content.readchunk()
            if chunk or not end_of_http_chunk:  # (b"", True): a chunk boundary, not the end
                return chunk
    except aiohttp.ClientPayloadError as exc:
        raise _transport_error(
            IncompleteTransferError, f"{filename}: body cut short ({exc})", response
        ) from exc
    except TimeoutError as exc:
        raise _transport_error(
            RequestTimeoutError, f"{filename}: timed out reading the body", response
        ) from exc
    except aiohttp.ClientError as exc:
        raise _transport_error(
            TransportError, f"{filename}: connection failed mid-body ({exc})", response
        ) from exc


@contextlib.contextmanager
def _socket_reads_of(response: aiohttp.ClientResponse, size: int) -> Iterator[None]:
    """Let the connection's transport read up to ``size`` bytes per ``recv`` meanwhile.

    asyncio's socket transport reads 256 KiB at a time (``max_size``); larger reads mean
    fewer pieces through the event loop and the HTTP parser. Transports without that knob
    (TLS, uvloop) are left alone.
    """
    connection = response.connection
    transport = None if connection is None else connection.transport
    default = getattr(transport, "max_size", None)
    if not isinstance(default, int) or default >= size:
        yield
        return
    setattr(transport, "max_size", size)  # noqa: B010 - not in asyncio's type hints
    try:
        yield
    finally:
        setattr(transport, "max_size", default)  # noqa: B010


def _take_buffered(content: aiohttp.StreamReader) -> list[bytes]:
    """The body bytes aiohttp received but did not hand over before its read failed.

    ``readchunk()`` raises the connection's error even while earlier bytes are still buffered
    (a cut after a burst the reader had not consumed yet); they are sound, so take them.
    This reads aiohttp's private buffer; when it is not there, nothing is taken.
    """
    buffer = getattr(content, "_buffer", None)
    take_chunk = getattr(content, "_read_nowait_chunk", None)
    chunks: list[bytes] = []
    if buffer is None or take_chunk is None:
        return chunks
    with contextlib.suppress(Exception):
        while buffer:
            chunks.append(take_chunk(-1))
    return chunks


def _transport_error(
    cls: type[TransportError], message: str, response: aiohttp.ClientResponse
) -> TransportError:
    return cls(message, method=response.method, url=str(response.url))


class _PartWriter:
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
    async def open(cls, part_path: Path, offset: int) -> _PartWriter:
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


# ----------------------------------------------------------------------------- upload


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
        tracker = _Progress(self._progress, self._progress_name, size, 0)
        fd = await asyncio.to_thread(os.open, self._source, os.O_RDONLY)
        reading = self._read_next(fd, 0, limit)
        try:
            while reading is not None:
                chunk = await asyncio.shield(reading)  # shielded: see _PartWriter.flush
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
