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
    BodyPlan,
    Partial,
    PartIdentity,
    TransferProgress,
    check_complete,
    expected_total,
    multipart_upload_body,
    part_names,
    partfile,
    plan_body,
    receive,
    resume_offset,
    stream_to_part,
)
from chutes_jobs.transfer.record import PartRecord, read_record, write_record

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


IDENTITY = PartIdentity("job-1", "file-1", "a.bin")


def part_of(dest: Path) -> Path:
    return dest.with_name(part_names(dest.name).part)


def record_of(dest: Path) -> Path:
    return dest.with_name(part_names(dest.name).record)


def seed_partial(
    dest: Path, data: bytes, *, size: int | None = len(DATA), identity: PartIdentity = IDENTITY
) -> None:
    """Leave a partial of ``data`` with a record, as an interrupted download of ``identity``."""
    part_of(dest).write_bytes(data)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        record = PartRecord(identity.job_id, identity.file_id, size, 1, "elsewhere")
        write_record(fd, part_names(dest.name).record, record, filename=dest.name)
    finally:
        os.close(fd)


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def recorded(dest: Path) -> PartRecord | None:
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        return read_record(fd, part_names(dest.name).record, filename=dest.name)
    finally:
        os.close(fd)


async def attempt(
    client: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    overwrite: bool = False,
    progress: Any = None,
    identity: PartIdentity = IDENTITY,
) -> Path:
    """One download attempt, wired the way downloads.py does it."""
    partial = await Partial.claim(dest.parent, dest, identity, overwrite=overwrite)
    try:
        requested = partial.resume_from
        headers = {"Range": f"bytes={requested}-"} if requested else {}
        async with client.get(url, headers=headers) as response:
            response.raise_for_status()
            plan = plan_body(response, requested)
            writer = await partial.begin(plan)
            end = await stream_to_part(
                response, writer, plan=plan, filename=dest.name, progress=progress
            )
        check_complete(plan, end, dest.name)
        await partial.publish(size=end, overwrite=overwrite, fsync=True)
    finally:
        await partial.close()
    return dest


# ----------------------------------------------------------------------------- download


async def test_download_lands_under_the_final_name_with_the_same_bytes(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "out" / "a.bin"
    dest.parent.mkdir()
    assert await attempt(client, f"{base}/file", dest) == dest
    assert sha256(dest.read_bytes()) == sha256(DATA)
    assert names_in(dest.parent) == ["a.bin"]  # no partial, no record


async def test_resume_appends_a_206_body_to_the_part(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    seed_partial(dest, DATA[: 3 * MIB + 5])
    seen: list[TransferProgress] = []
    await attempt(client, f"{base}/file", dest, progress=seen.append)
    assert dest.read_bytes() == DATA
    assert seen[0].done > 3 * MIB  # counted from the resumed offset
    assert seen[-1] == TransferProgress("a.bin", len(DATA), len(DATA))


async def test_a_partial_without_a_record_of_this_file_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "a.bin"
    for stale in (None, PartIdentity("job-2", "file-1", "a.bin"), "no record"):
        if stale == "no record":
            part_of(dest).write_bytes(b"x" * 1000)
        else:
            seed_partial(dest, b"x" * 1000, identity=stale or IDENTITY, size=stale and len(DATA))
        with caplog.at_level("DEBUG", logger="chutes_jobs"):
            partial = await Partial.claim(tmp_path, dest, IDENTITY, overwrite=True)
        try:
            assert partial.resume_from == 0 and part_of(dest).stat().st_size == 0
            assert "discarding 1000 bytes of partial a.bin.part" in caplog.text
        finally:
            await partial.close()
        caplog.clear()
        assert not part_of(dest).exists() and not record_of(dest).exists()  # empty: removed


async def test_resume_restarts_when_the_server_answers_200(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    seed_partial(dest, b"stale bytes that must not survive" * 1000)
    await attempt(client, f"{base}/norange", dest)
    assert dest.read_bytes() == DATA


async def test_a_resume_announcing_another_size_restarts(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    seed_partial(dest, DATA[:1000], size=len(DATA) + 1)  # the file changed on the server since
    with pytest.raises(IncompleteTransferError, match=f"announced {len(DATA)} bytes"):
        await attempt(client, f"{base}/file", dest)
    assert not dest.exists() and not part_of(dest).exists()
    await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == DATA


async def test_a_206_starting_elsewhere_is_refused_and_the_next_attempt_restarts(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    seed_partial(dest, DATA[:100])
    with pytest.raises(IncompleteTransferError, match="restarting"):
        await attempt(client, f"{base}/badrange", dest)
    assert not dest.exists()
    assert not part_of(dest).exists()  # emptied, so removed: the next attempt asks for it all
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
    assert part_of(dest).read_bytes() == DATA[: 2 * MIB]
    assert recorded(dest) == PartRecord("job-1", "file-1", len(DATA), os.getpid(), ANY_HOST)
    await attempt(client, f"{base}/file", dest)  # the retry resumes and completes
    assert dest.read_bytes() == DATA


class _AnyHost(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)

    def __hash__(self) -> int:
        return 0


ANY_HOST = _AnyHost()


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
    assert part_of(dest).read_bytes() == DATA[:cut_at]
    await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == DATA


async def test_bytes_still_buffered_when_the_cut_is_seen_are_kept(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # the whole short body and the close arrive before the first read: aiohttp's readany()
    # raises at once, with the body still in its buffer
    state, base = server
    state.cut_at = 100_000
    dest = tmp_path / "a.bin"
    partial = await Partial.claim(tmp_path, dest, IDENTITY, overwrite=False)
    try:
        async with client.get(f"{base}/cut") as response:
            while response.content.exception() is None:
                await asyncio.sleep(0.01)
            plan = plan_body(response, 0)
            writer = await partial.begin(plan)
            with pytest.raises(IncompleteTransferError, match="body cut short"):
                await stream_to_part(response, writer, plan=plan, filename="a.bin")
    finally:
        await partial.close()
    assert part_of(dest).read_bytes() == DATA[:100_000]


async def test_cancelled_download_leaves_no_final_file(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    task = asyncio.create_task(attempt(client, f"{base}/stalled", dest))
    while not (part_of(dest).exists() and part_of(dest).stat().st_size):  # the first write
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dest.exists()
    assert part_of(dest).read_bytes() == DATA[: 2 * MIB]  # the write under way ended first


async def test_existing_destination_is_not_overwritten_unless_asked(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == b"precious"
    assert names_in(tmp_path) == ["a.bin"]  # refused before writing
    await attempt(client, f"{base}/file", dest, overwrite=True)
    assert dest.read_bytes() == DATA


async def test_a_complete_partial_is_checked_with_its_last_byte(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    dest = tmp_path / "a.bin"
    seed_partial(dest, DATA)  # complete, never renamed (the process died in between)
    partial = await Partial.claim(tmp_path, dest, IDENTITY, overwrite=False)
    assert partial.resume_from == len(DATA) - 1
    await partial.close()
    await attempt(client, f"{base}/file", dest)
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
    assert not part_of(dest).exists() and not record_of(dest).exists()


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
    seed_partial(dest, DATA[: MIB + 1])
    await attempt(client, f"{base}/file", dest)
    assert dest.read_bytes() == DATA


async def test_larger_socket_reads_only_while_the_body_streams(
    server: tuple[Server, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, base = server
    during: list[int] = []
    partial = await Partial.claim(tmp_path, tmp_path / "a.bin", IDENTITY, overwrite=False)
    try:
        async with client.get(f"{base}/file") as response:
            assert response.connection is not None
            transport = response.connection.transport
            default = getattr(transport, "max_size", None)
            assert isinstance(default, int)  # asyncio's selector transport, which the tests use
            plan = plan_body(response, 0)
            await stream_to_part(
                response,
                await partial.begin(plan),
                plan=plan,
                filename="a.bin",
                progress=lambda _: during.append(getattr(transport, "max_size")),  # noqa: B009
            )
    finally:
        await partial.close()
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


def test_check_complete_needs_the_announced_count_or_a_framed_end() -> None:
    check_complete(BodyPlan(0, 5, framed=True), 5, "a")
    check_complete(BodyPlan(0, None, framed=True), 7, "a")  # chunked: aiohttp saw its end
    with pytest.raises(IncompleteTransferError, match="5 bytes received, the server announced 6"):
        check_complete(BodyPlan(0, 6, framed=True), 5, "a")
    with pytest.raises(IncompleteTransferError, match="neither a length nor chunked framing"):
        check_complete(BodyPlan(0, None, framed=False), 5, "a")


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


@pytest.mark.parametrize(
    ("status", "headers", "requested", "plan"),
    [
        (200, {"Content-Length": "100"}, 40, BodyPlan(0, 100, framed=True)),
        (200, {}, 0, BodyPlan(0, None, framed=False)),
        (200, {"Transfer-Encoding": "chunked"}, 0, BodyPlan(0, None, framed=True)),
        (206, {"Content-Range": "bytes 40-99/100", "Content-Length": "60"}, 40,
         BodyPlan(40, 100, framed=True)),
        (206, {"Content-Range": "bytes 0-99/100", "Content-Length": "100"}, 40,
         BodyPlan(0, 100, framed=True)),  # from 0: a restart
        (206, {"Content-Range": "bytes 10-99/100", "Content-Length": "90"}, 40,
         BodyPlan(0, 100, framed=True, refused="the server answered 'bytes 10-99/100' to a "
                  "request from byte 40")),
        (206, {"Content-Range": "bytes 40-99/100", "Content-Length": "30",
               "Content-Encoding": "gzip"}, 40,
         BodyPlan(40, None, framed=True, refused="the server answered a content-coded range, "
                  "whose offsets are not the file's")),
    ],
)  # fmt: skip
def test_plan_body(status: int, headers: dict[str, str], requested: int, plan: BodyPlan) -> None:
    response: Any = FakeResponse(status, headers)
    assert plan_body(response, requested) == plan


class RawServer:
    """A TCP server answering each GET with ``reply`` verbatim, then closing the connection."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.reply)
        await writer.drain()
        writer.close()


async def raw_server(reply: bytes) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(RawServer(reply).handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/f"


@pytest.mark.parametrize(
    ("head", "body", "error"),
    [
        # no length, no chunked: the connection's close ends the body, and a cut looks the same
        ("Connection: close", DATA[:5000], "neither a length nor chunked framing"),
        # chunked, cut before its last chunk
        ("Transfer-Encoding: chunked", b"1388\r\n" + DATA[:5000] + b"\r\n", "body cut short"),
        # chunked, cut inside a chunk
        ("Transfer-Encoding: chunked", b"1388\r\n" + DATA[:100], "body cut short"),
        # a length, cut short
        ("Content-Length: 5000", DATA[:4000], "body cut short"),
    ],
)
async def test_every_early_end_is_incomplete_and_publishes_nothing(
    client: aiohttp.ClientSession, tmp_path: Path, head: str, body: bytes, error: str
) -> None:
    server, url = await raw_server(f"HTTP/1.1 200 OK\r\n{head}\r\n\r\n".encode() + body)
    dest = tmp_path / "a.bin"
    try:
        with pytest.raises(IncompleteTransferError, match=error):
            await attempt(client, url, dest)
    finally:
        server.close()
    assert not dest.exists()


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
