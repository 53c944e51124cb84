"""Reading a download's body into its partial file: what the answer says, batching, errors.

One download attempt is (``partial.py`` holds the file side)::

    requested = partial.resume_from                   # N > 0 only for a partial of this file
    (send the GET, with "Range: bytes=N-" when N > 0, and get a 2xx response)
    plan = plan_body(response, requested)             # where the body goes, the file's size
    writer = await partial.begin(plan)                # restart or resume; space reserved
    end = await stream_to_part(response, writer, plan=plan, filename=name, progress=cb)
    check_complete(plan, end, name)                   # IncompleteTransferError unless proven
    await partial.publish(size=end, overwrite=False)  # fsync + atomic rename, checked

How the body is read and why (measured): ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Final

import aiohttp
import attrs
from aiohttp import hdrs

from ..errors import IncompleteTransferError, RequestTimeoutError, TransportError
from .partfile import PartWriter
from .progress import ProgressCallback, ProgressThrottle

__all__ = [
    "BodyPlan",
    "check_complete",
    "expected_total",
    "plan_body",
    "resume_offset",
    "stream_to_part",
]

MIB: Final = 1024 * 1024
#: aiohttp buffers up to twice this per response before pausing the socket.
READ_BUFFER = 1 * MIB
#: Bytes asyncio asks the socket for per read while a body streams (its default: 256 KiB).
SOCKET_READ = 1 * MIB
#: Received chunks are gathered up to this size and written by one thread job (``os.writev``).
WRITE_BATCH = 2 * MIB

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@attrs.frozen
class BodyPlan:
    """What a download answer's body is, from its status and headers.

    ``offset``: where the body goes in the file; ``total``: the whole file's size the answer
    announces (``None`` when it does not say); ``framed``: whether the body's end is framed
    (a length or chunked encoding), so that a dropped connection cannot pass for its end;
    ``refused``: why the body must not be written at all (``None`` when it may).
    """

    offset: int
    total: int | None
    framed: bool
    refused: str | None = None


def plan_body(response: aiohttp.ClientResponse, requested_offset: int) -> BodyPlan:
    """The :class:`BodyPlan` of ``response`` to a GET that asked for ``requested_offset`` on.

    A 206 must start where it was asked to (or at 0: a restart); a 206 of a content-coded
    body is never resumed, its offsets not being the file's.
    """
    offset = resume_offset(response, requested_offset)
    coded = response.headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity"
    chunked = "chunked" in response.headers.get(hdrs.TRANSFER_ENCODING, "").lower()
    framed = response.content_length is not None or chunked
    refused = None
    if response.status == 206 and _range_start(response) != offset:
        refused = (
            f"the server answered {response.headers.get(hdrs.CONTENT_RANGE)!r} to a request "
            f"from byte {requested_offset}"
        )
    elif response.status == 206 and coded and offset > 0:
        refused = "the server answered a content-coded range, whose offsets are not the file's"
    return BodyPlan(offset, expected_total(response, offset), framed, refused)


def check_complete(plan: BodyPlan, end: int, filename: str) -> None:
    """Raise :class:`IncompleteTransferError` unless the body that ended at byte ``end`` of the
    file is proven complete: ``end`` is the announced size, or, with no size announced, the
    body was framed (aiohttp raises for a framed body cut short, so it ended properly)."""
    if plan.total is not None and end != plan.total:
        raise IncompleteTransferError(
            f"{filename}: {end} bytes received, the server announced {plan.total}"
        )
    if plan.total is None and not plan.framed:
        raise IncompleteTransferError(
            f"{filename}: the server sent neither a length nor chunked framing, so the end of "
            "the body cannot be told from a dropped connection"
        )


def resume_offset(response: aiohttp.ClientResponse, requested_offset: int) -> int:
    """Where this response's body goes in the partial file.

    ``requested_offset`` on a 206 whose ``Content-Range`` starts there; 0 (restart from the
    beginning) on a 200 or on anything inconsistent. :func:`plan_body` refuses a 206 body
    that does not start at this offset, so a bad range is never spliced in.
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
    writer: PartWriter,
    *,
    plan: BodyPlan,
    filename: str,
    progress: ProgressCallback | None = None,
) -> int:
    """Write the response body through ``writer`` (which starts at ``plan.offset``); return
    where the body ended in the file.

    Disk writes run in a worker thread, batched (see the module docstring), so the event loop
    never waits on the disk. Connection failures mid-body raise
    :class:`IncompleteTransferError` / :class:`TransportError` / :class:`RequestTimeoutError`;
    whatever arrived before is written first, for a resume. ``progress`` gets throttled
    snapshots and a final one. When this returns or raises, no write is in flight.
    """
    tracker = ProgressThrottle(progress, filename, plan.total, plan.offset)
    try:
        await _pump(response, writer, tracker, filename)
        await writer.flush()
    finally:
        await writer.settle()
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
