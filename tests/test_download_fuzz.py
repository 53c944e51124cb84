"""Fuzzing downloads (issue 12): whatever the server does and whatever the folder holds, every
file under a final name has the server's sha256.

A loopback server answers each download request by a script drawn by hypothesis: bodies cut at
any byte, Range honoured or ignored (200 instead of 206), a 206 starting elsewhere or
announcing another size, a length or chunked framing. The destination may hold stale partials
(of another job, of another size, with or without a record, or a true prefix), and two
downloads of the same file may run at once. Seeded and bounded: it runs in CI.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
from aiohttp import web
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from chutes_jobs import (
    ChutesError,
    ChutesSession,
    DownloadInProgressError,
    OutputFile,
    RetryPolicy,
)
from chutes_jobs.downloads import download_file
from chutes_jobs.transfer import part_names
from chutes_jobs.transfer.record import PartRecord, write_record

JOB, FILE = "job-1", "file-1"


@attrs.frozen
class Reply:
    """How the server answers one request."""

    # "honour", "ignore" (200), "elsewhere" (206 from another byte), "resized" (announcing
    # another size), "part" (206 of only the first half of what was asked, framed properly)
    ranges: str
    cut_at: int | None  # close the connection after this many body bytes
    chunked: bool


replies = st.builds(
    Reply,
    ranges=st.sampled_from(["honour", "honour", "ignore", "elsewhere", "resized", "part"]),
    cut_at=st.one_of(st.none(), st.integers(0, 300_000)),
    chunked=st.booleans(),
)


@attrs.frozen
class Stale:
    """What the destination holds before the download."""

    kind: str  # "none", "prefix" (a true one, recorded), "other job", "other size", "no record"
    length: int


stales = st.builds(
    Stale,
    kind=st.sampled_from(["none", "prefix", "prefix", "other job", "other size", "no record"]),
    length=st.integers(0, 300_000),
)


class Server:
    def __init__(self, data: bytes, script: list[Reply]) -> None:
        self.data = data
        self.script = list(script)
        #: ``(n, data)``: from the n-th request on, the file is ``data`` (it changed).
        self.changes: tuple[int, bytes] | None = None
        self.requests = 0

    async def download(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.changes is not None and self.requests >= self.changes[0]:
            self.data = self.changes[1]
        reply = self.script.pop(0) if self.script else Reply("honour", None, False)
        data, start, status = self.data, 0, 200
        headers = {"Content-Type": "application/octet-stream"}
        asked = request.headers.get("Range")
        if asked and reply.ranges != "ignore":
            start = int(asked[len("bytes=") : -1])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status, total = 206, len(data)
            if reply.ranges == "elsewhere":
                start = max(0, start - 1) if start else 1
            if reply.ranges == "resized":
                total += 1
            end = len(data)
            if reply.ranges == "part":
                end = start + max(1, (len(data) - start) // 2)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
            data = data[:end]
        body = data[start:]
        response = web.StreamResponse(status=status, headers=headers)
        if reply.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        await response.prepare(request)
        sent = body if reply.cut_at is None else body[: reply.cut_at]
        for at in range(0, len(sent), 65_536):
            await response.write(sent[at : at + 65_536])
        if len(sent) < len(body):
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/jobs/{job}/download/{file}", server.download)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def leave(stale: Stale, dest: Path, data: bytes) -> None:
    """Put ``stale`` where the download of ``dest`` keeps its partial."""
    if stale.kind == "none":
        return
    names = part_names(dest.name)
    length = stale.length
    if stale.kind == "prefix":  # a strict prefix, or the whole file never renamed
        length = length % (len(data) + 1)
    content = data[:length] if stale.kind == "prefix" else os.urandom(length)
    (dest.parent / names.part).write_bytes(content)
    if stale.kind == "no record":
        return
    job = "job-0" if stale.kind == "other job" else JOB
    size = len(data) + 7 if stale.kind == "other size" else len(data)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        record = PartRecord(job, FILE, size, 1, "elsewhere")
        write_record(fd, names.record, record, filename=dest.name)
    finally:
        os.close(fd)


async def download(session: ChutesSession, dest: Path) -> Path | BaseException:
    file = OutputFile(file_id=FILE, filename="f.bin", uploaded=True)
    try:
        return await download_file(session, JOB, file, dest, progress=None, overwrite=True)
    except (ChutesError, OSError) as exc:  # retries exhausted, or the other download owns it
        return exc


async def one_run(
    data: bytes,
    script: list[Reply],
    stale: Stale,
    writers: int,
    change: tuple[int, bytes] | None = None,
) -> None:
    versions = {hashlib.sha256(data).hexdigest()}
    if change is not None:  # the server's file changes size from the n-th request on
        versions.add(hashlib.sha256(change[1]).hexdigest())
    with tempfile.TemporaryDirectory() as folder:
        dest = Path(folder) / "f.bin"
        leave(stale, dest, data)
        server = Server(data, script)
        server.changes = change
        policy = RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0)
        async with (
            serving(server) as base_url,
            ChutesSession(base_url=base_url, api_key="cpk_fuzz", retry_policy=policy) as session,
        ):
            outcomes = await asyncio.gather(*(download(session, dest) for _ in range(writers)))
            for outcome in outcomes:
                if isinstance(outcome, Path):  # one version whole, never a mix of two
                    assert hashlib.sha256(outcome.read_bytes()).hexdigest() in versions
                else:
                    assert not isinstance(outcome, AssertionError), outcome
            if dest.exists():
                assert hashlib.sha256(dest.read_bytes()).hexdigest() in versions
            if writers == 2:  # the second one started while the first held the partial
                assert any(isinstance(o, DownloadInProgressError) for o in outcomes) or all(
                    isinstance(o, Path) for o in outcomes
                )
            # whatever the run left behind, a clean attempt finishes it with the exact bytes
            server.script.clear()
            final = await download(session, dest)
            assert isinstance(final, Path), final
            assert final.read_bytes() == server.data
            assert sorted(os.listdir(folder)) == ["f.bin"]


@seed(20240612)
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    size=st.integers(0, 300_000),
    script=st.lists(replies, max_size=4),
    stale=stales,
    writers=st.sampled_from([1, 1, 2]),
    change=st.one_of(st.none(), st.none(), st.tuples(st.integers(1, 4), st.integers(0, 300_000))),
)  # fmt: skip
def test_every_file_under_its_final_name_is_the_servers(
    size: int,
    script: list[Reply],
    stale: Stale,
    writers: int,
    change: tuple[int, int] | None,
) -> None:
    data = version(size, 0)
    changed = None
    if change is not None:  # another size: a same-size change is beyond what a record binds
        at, new_size = change
        changed = (at, version(new_size + (new_size == size), 1))
    asyncio.run(one_run(data, script, stale, writers, changed))


def version(size: int, n: int) -> bytes:
    return hashlib.shake_256(f"{size}:{n}".encode()).digest(size)


async def test_a_file_that_shrank_on_the_server_between_attempts() -> None:
    """Cut at 2 MiB, then a 206 of another size, then the file is 1 MiB: the partial's stale
    bytes must not survive the restart (they did when the restart forgot what was written)."""
    old, new = os.urandom(3 << 20), os.urandom(1 << 20)
    script = [Reply("honour", 2 << 20, False), Reply("resized", None, False)]
    server = Server(old, script)
    server.changes = (3, new)
    with tempfile.TemporaryDirectory() as folder:
        policy = RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0)
        async with (
            serving(server) as base_url,
            ChutesSession(base_url=base_url, api_key="cpk_fuzz", retry_policy=policy) as session,
        ):
            path = await download(session, Path(folder) / "f.bin")
        assert isinstance(path, Path), path
        assert path.read_bytes() == new


async def test_a_restart_at_the_headers_does_not_stall_the_next_request() -> None:
    """A download restarted at its headers leaves a chunked body over 64 KiB unread; the next
    request must be answered at once, not after the read timeout (aiohttp 3.11.0 to 3.11.10
    pooled that connection with reading paused: hence the lower bound 3.11.11)."""
    data = version(275_973, 0)
    script = [Reply("honour", None, True), Reply("ignore", None, False)]
    server = Server(data, script)
    with tempfile.TemporaryDirectory() as folder:
        dest = Path(folder) / "f.bin"
        leave(Stale("other size", 132_869), dest, data)  # the record names another size
        policy = RetryPolicy(max_attempts=2, initial_backoff=0, max_backoff=0)
        async with (
            serving(server) as base_url,
            ChutesSession(
                base_url=base_url, api_key="cpk_fuzz", retry_policy=policy, read_timeout=5
            ) as session,
        ):
            path = await download(session, dest)
        assert isinstance(path, Path), path  # a timeout would have spent the second attempt
        assert path.read_bytes() == data
        assert server.requests == 2
