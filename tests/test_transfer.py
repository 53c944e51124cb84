"""Streaming transfers against a tiny aiohttp.web server on 127.0.0.1 (not the emulator)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from chutes_jobs.errors import IncompleteTransferError
from chutes_jobs.transfer import (
    TransferProgress,
    check_complete,
    expected_total,
    finalize,
    multipart_upload_body,
    part_path_for,
    partfile,
    range_header_for,
    receive,
    resume_offset,
    stream_to_part,
)

MIB = 1024 * 1024
DATA = os.urandom(5 * MIB + 7)  # spans several write batches and an odd tail


class Server:
    """What the test server saw and how it should misbehave."""

    def __init__(self) -> None:
        self.data = DATA
        self.uploads: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.cut_at = 2 * MIB


SERVER = web.AppKey("server", Server)


async def _serve_range(request: web.Request) -> web.StreamResponse:
    data: bytes = request.app[SERVER].data
    start = 0
    if request.path == "/file" and (rng := request.headers.get("Range")):
        start = int(rng.removeprefix("bytes=").split("-")[0])
    if start:
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        return web.Response(body=data[start:], status=206, headers=headers)
    return web.Response(body=data, content_type="application/octet-stream")


async def _serve_bad_range(request: web.Request) -> web.StreamResponse:
    data: bytes = request.app[SERVER].data
    headers = {"Content-Range": f"bytes 10-{len(data) - 1}/{len(data)}"}
    return web.Response(body=data[10:], status=206, headers=headers)


async def _serve_short(request: web.Request) -> web.StreamResponse:
    """Announce the whole file, send 2 MiB of it, then drop the connection."""
    data: bytes = request.app[SERVER].data
    response = web.StreamResponse(headers={"Content-Length": str(len(data))})
    await response.prepare(request)
    await response.write(data[: 2 * MIB])
    assert request.transport is not None
    request.transport.close()
    return response


async def _serve_chunked(request: web.Request) -> web.StreamResponse:
    """The file in ``Transfer-Encoding: chunked`` pieces of assorted sizes, no length."""
    data: bytes = request.app[SERVER].data
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    pos, sizes = 0, [1, 7, 65_536, 300_000, MIB + 3]
    while pos < len(data):
        size = sizes[pos % len(sizes)]
        await response.write(data[pos : pos + size])
        pos += size
    await response.write_eof()
    return response


async def _serve_cut(request: web.Request) -> web.StreamResponse:
    """Announce the whole file, send its first ``cut_at`` bytes, then close the connection."""
    server: Server = request.app[SERVER]
    response = web.StreamResponse(headers={"Content-Length": str(len(server.data))})
    await response.prepare(request)
    await response.write(server.data[: server.cut_at])
    assert request.transport is not None
    request.transport.close()
    return response


async def _serve_stalled(request: web.Request) -> web.StreamResponse:
    """Send 2 MiB, then hang until the test releases it."""
    server: Server = request.app[SERVER]
    response = web.StreamResponse(headers={"Content-Length": str(len(server.data))})
    await response.prepare(request)
    await response.write(server.data[: 2 * MIB])
    await server.release.wait()
    return response


async def _receive_upload(request: web.Request) -> web.Response:
    parts = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        parts.append(
            {
                "name": part.name,
                "filename": part.filename,
                "content_type": part.headers.get("Content-Type"),
                "body": await part.read(),
            }
        )
    request.app[SERVER].uploads.append({"headers": dict(request.headers), "parts": parts})
    return web.json_response({"status": "success"})


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    app = web.Application(client_max_size=64 * MIB)
    app[SERVER] = state
    app.router.add_get("/file", _serve_range)
    app.router.add_get("/norange", _serve_range)
    app.router.add_get("/badrange", _serve_bad_range)
    app.router.add_get("/short", _serve_short)
    app.router.add_get("/cut", _serve_cut)
    app.router.add_get("/chunked", _serve_chunked)
    app.router.add_get("/stalled", _serve_stalled)
    app.router.add_put("/upload", _receive_upload)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield state, f"http://127.0.0.1:{port}"
    state.release.set()
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def attempt(
    client: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    overwrite: bool = False,
    progress: Any = None,
) -> Path:
    """One download attempt, wired the way job.py does it."""
    part = part_path_for(dest)
    headers = range_header_for(part)
    requested = int(headers["Range"][6:-1]) if headers else 0
    async with client.get(url, headers=headers) as response:
        response.raise_for_status()
        offset = resume_offset(response, requested)
        total = expected_total(response, offset)
        await stream_to_part(response, part, offset=offset, filename=dest.name, progress=progress)
    check_complete(part, total)
    return await finalize(part, dest, overwrite=overwrite)


# ----------------------------------------------------------------------------- download


async def test_download_lands_under_the_final_name_with_the_same_bytes(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "out" / "a.bin"
    assert await attempt(client, f"{base}/file", dest) == dest
    assert sha256(dest.read_bytes()) == sha256(DATA)
    assert not part_path_for(dest).exists()


async def test_resume_appends_a_206_body_to_the_part(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    part_path_for(dest).write_bytes(DATA[: 3 * MIB + 5])
    assert range_header_for(part_path_for(dest)) == {"Range": f"bytes={3 * MIB + 5}-"}
    seen: list[TransferProgress] = []
    await attempt(client, f"{base}/file", dest, progress=seen.append)
    assert dest.read_bytes() == DATA
    assert seen[0].done > 3 * MIB  # counted from the resumed offset
    assert seen[-1] == TransferProgress("a.bin", len(DATA), len(DATA))


async def test_resume_restarts_when_the_server_answers_200(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    part_path_for(dest).write_bytes(b"stale bytes that must not survive" * 1000)
    await attempt(client, f"{base}/norange", dest)
    assert dest.read_bytes() == DATA


async def test_a_206_starting_elsewhere_is_refused_and_the_next_attempt_restarts(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    part = part_path_for(dest)
    part.write_bytes(DATA[:100])
    with pytest.raises(IncompleteTransferError, match="restarting from zero"):
        await attempt(client, f"{base}/badrange", dest)
    assert not dest.exists()
    assert range_header_for(part) == {}  # next attempt asks for the whole file
    await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == DATA


async def test_short_body_raises_and_leaves_no_final_file(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    with pytest.raises(IncompleteTransferError):
        await attempt(client, f"{base}/short", dest)
    assert not dest.exists()
    assert part_path_for(dest).read_bytes() == DATA[: 2 * MIB]
    await attempt(client, f"{base}/file", dest)  # the retry resumes and completes
    assert dest.read_bytes() == DATA


@pytest.mark.parametrize("cut_at", [1, 100_000, 2 * MIB + 1, 3 * MIB + 12_345])
async def test_a_cut_keeps_every_byte_received_in_the_part(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path, cut_at: int
) -> None:
    # aiohttp hands over every byte sent before a clean close (measured); all of them are kept,
    # not only whole write batches
    state, base = server
    state.cut_at = cut_at
    dest = tmp_path / "a.bin"
    with pytest.raises(IncompleteTransferError):
        await attempt(client, f"{base}/cut", dest)
    assert not dest.exists()
    assert part_path_for(dest).read_bytes() == DATA[:cut_at]
    await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == DATA


async def test_bytes_still_buffered_when_the_cut_is_seen_are_kept(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # the whole short body and the close arrive before the first read: aiohttp's readany()
    # raises at once, with the body still in its buffer
    state, base = server
    state.cut_at = 100_000
    part = tmp_path / "a.bin.part"
    async with client.get(f"{base}/cut") as response:
        while response.content.exception() is None:
            await asyncio.sleep(0.01)
        with pytest.raises(IncompleteTransferError, match="body cut short"):
            await stream_to_part(response, part, offset=0, filename="a.bin")
    assert part.read_bytes() == DATA[:100_000]


async def test_cancelled_download_leaves_no_final_file(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    started = asyncio.Event()

    def on_progress(p: TransferProgress) -> None:
        started.set()

    task = asyncio.create_task(attempt(client, f"{base}/stalled", dest, progress=on_progress))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dest.exists()
    assert DATA.startswith(part_path_for(dest).read_bytes())


async def test_existing_destination_is_not_overwritten_unless_asked(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == b"precious"
    assert part_path_for(dest).read_bytes() == DATA  # kept: nothing to download again
    await attempt(client, f"{base}/file", dest, overwrite=True)
    assert dest.read_bytes() == DATA


async def test_progress_is_monotone_throttled_and_ends_at_the_total(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    seen: list[TransferProgress] = []
    await attempt(client, f"{base}/file", tmp_path / "a.bin", progress=seen.append)
    done = [p.done for p in seen]
    assert done == sorted(done)
    assert len(seen) <= len(DATA) // MIB + 1
    assert {p.total for p in seen} == {len(DATA)}
    assert seen[-1].done == len(DATA)


async def test_a_chunked_body_without_length_downloads(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = await attempt(client, f"{base}/chunked", tmp_path / "a.bin")
    assert dest.read_bytes() == DATA


async def test_write_behind_keeps_the_bytes_and_the_resume_intact(
    server: tuple[Server, str],
    client: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a window much smaller than the file: ranges are dropped from the page cache all along
    monkeypatch.setattr(partfile, "WRITE_BEHIND", 64 * 1024)
    monkeypatch.setattr(receive, "WRITE_BATCH", 256 * 1024)
    _, base = server
    dest = tmp_path / "a.bin"
    part_path_for(dest).write_bytes(DATA[: MIB + 1])
    await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == DATA


async def test_larger_socket_reads_only_while_the_body_streams(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    during: list[int] = []
    async with client.get(f"{base}/file") as response:
        assert response.connection is not None
        transport = response.connection.transport
        default = getattr(transport, "max_size", None)
        assert isinstance(default, int)  # asyncio's selector transport, which the tests use
        await stream_to_part(
            response,
            tmp_path / "a.bin.part",
            offset=0,
            filename="a.bin",
            progress=lambda _: during.append(getattr(transport, "max_size")),  # noqa: B009
        )
    *streaming, final = during  # the final snapshot comes once the body is in
    assert streaming and set(streaming) == {receive.SOCKET_READ}
    assert final == default
    assert getattr(transport, "max_size") == default  # noqa: B009


async def test_empty_file_downloads(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    state, base = server
    state.data = b""
    seen: list[TransferProgress] = []
    dest = await attempt(client, f"{base}/file", tmp_path / "empty", progress=seen.append)
    assert dest.read_bytes() == b""
    assert seen == [TransferProgress("empty", 0, 0)]


def test_check_complete_compares_the_byte_count(tmp_path: Path) -> None:
    part = tmp_path / "a.part"
    part.write_bytes(b"12345")
    check_complete(part, 5)
    check_complete(part, None)  # size unknown: nothing to compare
    with pytest.raises(IncompleteTransferError, match="5 bytes received, the server announced 6"):
        check_complete(part, 6)


class FakeResponse:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = CIMultiDict(headers)
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None else None


@pytest.mark.parametrize(
    ("status", "headers", "requested", "offset", "total"),
    [
        (200, {"Content-Length": "100"}, 0, 0, 100),
        (200, {"Content-Length": "100"}, 40, 0, 100),  # Range ignored: restart
        (200, {}, 0, 0, None),
        (206, {"Content-Range": "bytes 40-99/100", "Content-Length": "60"}, 40, 40, 100),
        (206, {"Content-Range": "bytes 40-99/*", "Content-Length": "60"}, 40, 40, 100),
        (206, {"Content-Range": "bytes 10-99/100", "Content-Length": "90"}, 40, 0, 100),
        (206, {"Content-Range": "garbage", "Content-Length": "60"}, 40, 0, None),
        (206, {"Content-Length": "60"}, 40, 0, None),
        (200, {"Content-Length": "50", "Content-Encoding": "gzip"}, 0, 0, None),
    ],
)
def test_resume_offset_and_expected_total(
    status: int, headers: dict[str, str], requested: int, offset: int, total: int | None
) -> None:
    response: Any = FakeResponse(status, headers)
    assert resume_offset(response, requested) == offset
    assert expected_total(response, offset) == total


# ----------------------------------------------------------------------------- upload


async def test_upload_body_has_a_length_and_exactly_the_file_and_path_parts(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    state, base = server
    source = tmp_path / "a.bin"
    source.write_bytes(DATA)
    seen: list[TransferProgress] = []
    body = multipart_upload_body(source, "sub/a.bin", progress=seen.append)
    async with client.put(f"{base}/upload", data=body) as response:
        assert response.status == 200
    (upload,) = state.uploads
    assert int(upload["headers"]["Content-Length"]) == body.size
    assert "Transfer-Encoding" not in upload["headers"]
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    file_part, path_part = upload["parts"]
    assert [file_part["name"], path_part["name"]] == ["file", "path"]
    assert file_part["filename"] == "a.bin"
    assert file_part["content_type"] == "application/octet-stream"
    assert sha256(file_part["body"]) == sha256(DATA)
    assert path_part["body"] == b"sub/a.bin"
    assert seen[-1] == TransferProgress("sub/a.bin", len(DATA), len(DATA))
    assert [p.done for p in seen] == sorted(p.done for p in seen)


async def test_a_new_body_rereads_the_file(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    state, base = server
    source = tmp_path / "a.bin"
    for content in (DATA[:MIB], b"changed since the first attempt"):
        source.write_bytes(content)
        async with client.put(f"{base}/upload", data=multipart_upload_body(source, "a.bin")):
            pass
    assert [u["parts"][0]["body"] for u in state.uploads] == [
        DATA[:MIB],
        b"changed since the first attempt",
    ]


async def test_empty_file_uploads(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    state, base = server
    source = tmp_path / "empty"
    source.write_bytes(b"")
    async with client.put(f"{base}/upload", data=multipart_upload_body(source, "empty")):
        pass
    assert state.uploads[0]["parts"][0]["body"] == b""
    assert "Transfer-Encoding" not in state.uploads[0]["headers"]


async def test_a_file_that_shrinks_during_upload_fails_the_attempt(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    source = tmp_path / "a.bin"
    source.write_bytes(DATA)
    body = multipart_upload_body(source, "a.bin")
    source.write_bytes(DATA[:MIB])
    with pytest.raises((IncompleteTransferError, aiohttp.ClientError)):
        async with client.put(f"{base}/upload", data=body):
            pass
