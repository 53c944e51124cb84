"""Reading a download's body into its ``.part`` file: Range resume, batching, errors.

One download attempt is::

    headers = range_header_for(part)                  # {"Range": "bytes=N-"} when resuming
    (send the GET with these headers, get a 2xx response)
    offset = resume_offset(response, requested)       # N on a matching 206, 0 on 200 (restart)
    total = expected_total(response, offset)          # Content-Range total / Content-Length
    await stream_to_part(response, part, offset=offset, filename=name, progress=cb)
    check_complete(part, total)                       # IncompleteTransferError when short
    await finalize(part, dest, overwrite=False)       # fsync + atomic rename

How the body is read and why (measured): ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import hdrs

from ..errors import IncompleteTransferError, RequestTimeoutError, TransportError
from .partfile import PartWriter
from .progress import ProgressCallback, ProgressThrottle

__all__ = ["expected_total", "resume_offset", "stream_to_part"]

MIB: Final = 1024 * 1024
#: aiohttp buffers up to twice this per response before pausing the socket.
READ_BUFFER = 1 * MIB
#: Bytes asyncio asks the socket for per read while a body streams (its default: 256 KiB).
SOCKET_READ = 1 * MIB
#: Received chunks are gathered up to this size and written by one thread job (``os.writev``).
WRITE_BATCH = 2 * MIB

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


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
    tracker = ProgressThrottle(progress, filename, expected_total(response, offset), offset)
    writer = await PartWriter.open(part_path, 0 if bad_range else offset)
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
    response: aiohttp.ClientResponse, writer: PartWriter, tracker: ProgressThrottle, filename: str
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
