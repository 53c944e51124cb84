"""Streaming an output file from disk, with optional ``Range`` support and body faults."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from .faults import Fault, close_connection
from .responses import HTTPError
from .storage import CHUNK_SIZE

__all__ = ["parse_range", "send_file"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span a single-range ``Range`` header asks for.

    None means "send everything" (no header, several ranges, or a malformed one, all of which
    a server may ignore); an unsatisfiable range raises a 416.
    """
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        if int(last) == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> HTTPError:
    return HTTPError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})


async def send_file(
    request: web.Request,
    path: Path,
    *,
    filename: str,
    range_support: bool,
    fault: Fault | None = None,
) -> web.StreamResponse:
    """Stream ``path`` as an attachment named ``filename`` (206 for a satisfiable Range)."""
    if fault is not None and fault.drop_after_handling:
        close_connection(request)
        return web.Response()
    size = (await asyncio.to_thread(path.stat)).st_size
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    span = None
    if range_support:
        headers["Accept-Ranges"] = "bytes"
        span = parse_range(request.headers.get("Range"), size)
    start, end = span if span is not None else (0, size - 1)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    count = end - start + 1
    response.content_length = count
    await response.prepare(request)
    to_send = _bytes_to_send(count, fault)
    if to_send:
        await _copy(request, response, path, start, to_send)
    if to_send < count:
        close_connection(request)
        return response
    await response.write_eof()
    return response


def _bytes_to_send(count: int, fault: Fault | None) -> int:
    if fault is None:
        return count
    if fault.cut_after is not None:
        count = min(count, fault.cut_after)
    if fault.short_body is not None:
        count = max(0, count - fault.short_body)
    return count


async def _copy(
    request: web.Request, response: web.StreamResponse, path: Path, offset: int, count: int
) -> None:
    with path.open("rb") as fh:
        transport = request.transport
        if transport is not None:
            try:
                await asyncio.get_running_loop().sendfile(transport, fh, offset, count)
                return
            except NotImplementedError:
                pass
        await _copy_by_chunks(response, fh, offset, count)


async def _copy_by_chunks(
    response: web.StreamResponse, fh: BinaryIO, offset: int, count: int
) -> None:
    await asyncio.to_thread(fh.seek, offset)
    while count > 0:
        chunk = await asyncio.to_thread(fh.read, min(CHUNK_SIZE, count))
        if not chunk:
            break
        await response.write(chunk)
        count -= len(chunk)
