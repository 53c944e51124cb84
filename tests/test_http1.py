"""The lean HTTP/1.1 pool, end to end over loopback sockets.

Each test runs a small raw ``asyncio`` server that reads requests and writes exactly the bytes
the test wants, counting connections, requests and the client's hang-ups. The last section
drives the pool through ``ChutesSession.request`` in bulk traffic (``bulk_traffic()``).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import pytest
import trustme
import yarl

import chutes_jobs
from chutes_jobs import (
    CallKind,
    ChutesSession,
    ConfigurationError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    TransportError,
)
from chutes_jobs._http import bulk_traffic
from chutes_jobs._http import http1 as _http1
from chutes_jobs._http.http1 import Http1Answer, Http1Pool

if TYPE_CHECKING:
    from conftest import FakeTime

API_KEY = "cpk_0f1e2d3c4b5a69788796a5b4c3d2e1f0.5c7d9e1f2a3b4c5d6e7f8091a2b3c4d5"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyZjBjN2U4ZSIsImlzcyI6ImNodXRlcyJ9.c2VjcmV0LXNpZw"
JOB = b'{"job_id":"2f0c7e8e","finished_at":null}'
#: Long enough never to fire in a passing test, short enough to end a broken one.
PATIENCE = 5.0


# -- a raw loopback server ------------------------------------------------------------------------


class Request:
    """One request as the server read it (header names lower-cased)."""

    def __init__(self, head: bytes, body: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, self.version = lines[0].split(" ")
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        self.body = body
        self.raw = head + body


class Peer:
    """One accepted connection, as a handler sees it."""

    def __init__(
        self,
        server: RawServer,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server, self.index = server, index
        self.reader, self.writer = reader, writer

    async def request(self) -> Request | None:
        """The next request, or None once the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            size = int(Request(head, b"").headers.get("content-length", "0"))
            request = Request(head, await self.reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server.eofs += 1
            return None
        self.server.requests.append(request)
        return request

    async def until_eof(self) -> None:
        """Return once the client closed the connection (whatever it sent meanwhile)."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.server.eofs += 1

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def trickle(self, data: bytes, pause: float) -> None:
        """Send ``data`` a byte at a time, ``pause`` seconds apart."""
        for byte in data:
            self.writer.write(bytes([byte]))
            await self.writer.drain()
            await asyncio.sleep(pause)

    async def hang_up(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A loopback server running ``handler`` on every connection it accepts."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests: list[Request] = []
        self.eofs = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        self._writers.append(writer)
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            await self.handler(Peer(self, self.connections, reader, writer))
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=PATIENCE)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def answer(
    body: bytes = JOB,
    status: str = "200 OK",
    headers: dict[str, str] | None = None,
    *,
    length: bool = True,
) -> bytes:
    """An HTTP/1.1 answer, with its Content-Length unless ``length`` is false."""
    fields = {"Content-Type": "application/json", **(headers or {})}
    if length:
        fields["Content-Length"] = str(len(body))
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


def answering(make: Callable[[Request], bytes] = lambda _: answer()) -> Handler:
    """A keep-alive handler: every request gets ``make(request)``, until the client leaves."""

    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            peer.send(make(request))

    return handler


def per_connection(first: Handler, then: Handler) -> Handler:
    """``first`` on the first connection, ``then`` on every later one."""

    async def handler(peer: Peer) -> None:
        await (first if peer.index == 1 else then)(peer)

    return handler


async def listen_then_wait_for_eof(peer: Peer) -> None:
    """Read one request, never answer it, and wait for the client to leave."""
    await peer.request()
    await peer.until_eof()


async def until(predicate: Callable[[], bool]) -> None:
    """Return once ``predicate()`` holds (checked every few milliseconds)."""
    async with asyncio.timeout(PATIENCE):
        while not predicate():
            await asyncio.sleep(0.005)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Serve = Callable[..., Awaitable[RawServer]]
MakePool = Callable[..., Http1Pool]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a :class:`RawServer`: ``await serve(handler, ssl_context=None)``."""
    servers: list[RawServer] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler)
        await server.start(ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def make_pool() -> AsyncIterator[MakePool]:
    """An :class:`Http1Pool` for an origin (closed after the test); settings may be overridden."""
    pools: list[Http1Pool] = []

    def make(origin: str, **settings: Any) -> Http1Pool:
        options: dict[str, Any] = {
            "limit": 4,
            "connect_timeout": PATIENCE,
            "read_timeout": PATIENCE,
            "total_timeout": PATIENCE,
            **settings,
        }
        pool = Http1Pool(yarl.URL(origin), **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


async def post(pool: Http1Pool, server: RawServer, path: str = "/jobs/c/m") -> Http1Answer:
    return await pool.send("POST", yarl.URL(f"{server.url}{path}"), {}, b"{}")


# -- keep-alive -----------------------------------------------------------------------------------


async def test_sequential_sends_reuse_one_connection(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(answering(lambda request: answer(request.target.encode())))
    pool = make_pool(server.url)
    for n in range(20):
        got = await post(pool, server, f"/jobs/{n}")
        assert (got.status, got.body) == (200, f"/jobs/{n}".encode())
    assert server.connections == 1
    assert len(server.requests) == 20


async def test_concurrent_sends_never_exceed_the_limit(serve: Serve, make_pool: MakePool) -> None:
    async def slowly(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.005)
            peer.send(answer())

    server = await serve(slowly)
    pool = make_pool(server.url, limit=3)
    answers = await asyncio.gather(*(post(pool, server) for _ in range(30)))
    assert [a.body for a in answers] == [JOB] * 30
    assert server.connections == 3
    assert server.max_open == 3
    assert len(server.requests) == 30


@pytest.mark.parametrize("server_hangs_up", [True, False])
async def test_connection_close_answer_is_not_reused(
    serve: Serve, make_pool: MakePool, server_hangs_up: bool
) -> None:
    async def once(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(answer(headers={"Connection": "close"}))
            if server_hangs_up:
                await peer.hang_up()
                return

    server = await serve(once)
    pool = make_pool(server.url)
    for _ in range(3):
        assert (await post(pool, server)).body == JOB
    assert server.connections == 3
    if not server_hangs_up:  # the client closes what it will not reuse
        await until(lambda: server.eofs == 3)


async def test_server_closing_an_idle_connection_is_transparent(
    serve: Serve, make_pool: MakePool
) -> None:
    async def one_then_hang_up(peer: Peer) -> None:
        await peer.request()
        peer.send(answer())
        await peer.hang_up()

    server = await serve(one_then_hang_up)
    pool = make_pool(server.url)
    assert (await post(pool, server)).body == JOB
    await until(lambda: all(c.closed for c in pool._idle))
    assert (await post(pool, server)).body == JOB
    assert server.connections == 2


async def test_a_connection_idle_past_the_expiry_is_not_reused(
    serve: Serve, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http1, "IDLE_EXPIRY", 0.05)
    server = await serve(answering())
    pool = make_pool(server.url)
    await post(pool, server)
    await post(pool, server)
    assert server.connections == 1
    await asyncio.sleep(0.1)
    assert (await post(pool, server)).body == JOB
    assert server.connections == 2
    await until(lambda: server.eofs == 1)  # the stale one was closed, not left open


@pytest.mark.parametrize(
    ("keep_alive", "connections"), [("timeout=1", 3), ("timeout=5, max=100", 1), ("max=9", 1)]
)
async def test_keep_alive_timeout_shortens_the_expiry(
    serve: Serve, make_pool: MakePool, keep_alive: str, connections: int
) -> None:
    server = await serve(answering(lambda _: answer(headers={"Keep-Alive": keep_alive})))
    pool = make_pool(server.url)
    for _ in range(3):
        assert (await post(pool, server)).body == JOB
    assert server.connections == connections


# -- framing and encodings ------------------------------------------------------------------------


async def test_chunked_answer_is_decoded(serve: Serve, make_pool: MakePool) -> None:
    async def chunked(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(answer(b"", headers={"Transfer-Encoding": "chunked"}, length=False))
            for piece in (JOB[:5], JOB[5:17], JOB[17:]):
                peer.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await asyncio.sleep(0)
            peer.send(b"0\r\n\r\n")

    server = await serve(chunked)
    pool = make_pool(server.url)
    for _ in range(2):
        got = await post(pool, server)
        assert got.body == JOB
        assert got.headers["transfer-encoding"] == "chunked"
    assert server.connections == 1


async def test_answer_framed_by_connection_close_is_read_whole(
    serve: Serve, make_pool: MakePool
) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.request()
        peer.send(answer(b"", length=False))
        await peer.trickle(JOB[:4], 0)
        peer.send(JOB[4:])
        await peer.hang_up()

    server = await serve(until_close)
    pool = make_pool(server.url)
    assert (await post(pool, server)).body == JOB
    assert (await post(pool, server)).body == JOB
    assert server.connections == 2


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("GZip", gzip.compress),
    ],
)
async def test_gzip_and_deflate_answers_are_decoded(
    serve: Serve, make_pool: MakePool, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    encoded = encode(JOB)
    server = await serve(answering(lambda _: answer(encoded, headers={"Content-Encoding": coding})))
    pool = make_pool(server.url)
    assert (await post(pool, server)).body == JOB
    assert (await post(pool, server)).body == JOB
    assert server.connections == 1


@pytest.mark.parametrize(
    ("coding", "body", "match"),
    [
        ("br", b"\x1b\x00\x00", "unsupported Content-Encoding 'br'"),
        ("gzip", b"not gzip at all", "cannot be decoded"),
        ("gzip", gzip.compress(JOB)[:-10], "cut short"),
        ("deflate", zlib.compress(JOB)[:-4], "cut short"),
    ],
    ids=["br", "not-gzip", "gzip-cut-short", "deflate-cut-short"],
)
async def test_an_answer_that_cannot_be_decoded_is_a_transport_error(
    serve: Serve, make_pool: MakePool, coding: str, body: bytes, match: str
) -> None:
    bad = answer(body, headers={"Content-Encoding": coding})
    server = await serve(per_connection(answering(lambda _: bad), answering()))
    pool = make_pool(server.url)
    with pytest.raises(TransportError, match=match) as info:
        await post(pool, server)
    assert not info.value.connect_failed
    assert not isinstance(info.value, RequestTimeoutError)
    await until(lambda: server.eofs == 1)  # that connection is dropped, not leaked
    assert (await post(pool, server)).status == 200
    assert server.connections == 2


# -- failures -------------------------------------------------------------------------------------


async def test_server_closing_without_answering_is_a_transport_error(
    serve: Serve, make_pool: MakePool
) -> None:
    async def hang_up(peer: Peer) -> None:
        await peer.request()
        await peer.hang_up()

    server = await serve(hang_up)
    pool = make_pool(server.url)
    with pytest.raises(TransportError, match="closed the connection") as info:
        await post(pool, server)
    assert not isinstance(info.value, RequestTimeoutError)
    assert not info.value.connect_failed
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
        b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"job',
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"job\r\n',
    ],
)
async def test_an_answer_cut_short_is_a_transport_error(
    serve: Serve, make_pool: MakePool, partial: bytes
) -> None:
    async def cut_short(peer: Peer) -> None:
        await peer.request()
        peer.send(partial)
        await peer.hang_up()

    server = await serve(cut_short)
    pool = make_pool(server.url)
    with pytest.raises(TransportError, match="before the whole answer arrived") as info:
        await post(pool, server)
    assert not info.value.connect_failed


async def test_refused_connection_is_connect_failed(make_pool: MakePool) -> None:
    pool = make_pool(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TransportError, match="could not connect") as info:
        await pool.send("POST", yarl.URL(f"http://127.0.0.1:{pool.port}/jobs"), {}, b"{}")
    assert info.value.connect_failed


async def test_silent_server_is_a_read_timeout(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(listen_then_wait_for_eof)
    pool = make_pool(server.url, read_timeout=0.2, total_timeout=None)
    with pytest.raises(RequestTimeoutError, match="timed out waiting") as info:
        await post(pool, server)
    assert not info.value.connect_failed
    await until(lambda: server.eofs == 1)


async def test_trickling_server_hits_the_total_timeout(serve: Serve, make_pool: MakePool) -> None:
    async def trickle_forever(peer: Peer) -> None:
        await peer.request()
        peer.send(answer(b"", headers={"Content-Length": "100000"}, length=False))
        await peer.trickle(b"x" * 100000, 0.01)

    server = await serve(trickle_forever)
    pool = make_pool(server.url, read_timeout=None, total_timeout=0.3)
    with pytest.raises(RequestTimeoutError):
        await post(pool, server)
    await until(lambda: server.open == 0)


async def test_data_arriving_keeps_the_read_timeout_at_bay(
    serve: Serve, make_pool: MakePool
) -> None:
    async def slow_but_steady(peer: Peer) -> None:
        await peer.request()
        peer.send(answer(b"", headers={"Content-Length": "40"}, length=False))
        await peer.trickle(b"x" * 40, 0.01)

    server = await serve(slow_but_steady)
    pool = make_pool(server.url, read_timeout=0.3, total_timeout=None)
    assert (await post(pool, server)).body == b"x" * 40


@pytest.mark.parametrize("chunked", [False, True])
async def test_answer_over_the_size_cap_is_a_transport_error(
    serve: Serve, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    monkeypatch.setattr(_http1, "MAX_ANSWER_BYTES", 1000)
    big = b"x" * 5000
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big) if chunked else big
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    server = await serve(answering(lambda _: answer(framed, headers=headers, length=not chunked)))
    pool = make_pool(server.url)
    with pytest.raises(TransportError, match="larger than 1000 bytes") as info:
        await post(pool, server)
    assert not info.value.connect_failed
    await until(lambda: server.eofs == 1)


@pytest.mark.parametrize(
    ("coding", "encode"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
async def test_answer_over_the_size_cap_once_decoded_is_a_transport_error(
    serve: Serve,
    make_pool: MakePool,
    monkeypatch: pytest.MonkeyPatch,
    coding: str,
    encode: Callable[[bytes], bytes],
) -> None:
    monkeypatch.setattr(_http1, "MAX_ANSWER_BYTES", 1000)
    bomb = encode(b"\0" * 100_000)
    assert len(bomb) < 1000
    server = await serve(answering(lambda _: answer(bomb, headers={"Content-Encoding": coding})))
    pool = make_pool(server.url)
    with pytest.raises(TransportError, match="larger than 1000 bytes once decoded"):
        await post(pool, server)


@pytest.mark.parametrize("coding", ["identity", "gzip"])
async def test_answer_at_the_size_cap_is_accepted(
    serve: Serve, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch, coding: str
) -> None:
    monkeypatch.setattr(_http1, "MAX_ANSWER_BYTES", 1000)
    body = b"y" * 1000 if coding == "identity" else gzip.compress(b"y" * 1000)
    server = await serve(answering(lambda _: answer(body, headers={"Content-Encoding": coding})))
    pool = make_pool(server.url)
    assert (await post(pool, server)).body == b"y" * 1000


@pytest.mark.parametrize(
    "garbage", [b"SSH-2.0-OpenSSH_9.6\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc", b"HTTP/1.1 OK"]
)
async def test_an_answer_that_is_not_http_is_a_transport_error(
    serve: Serve, make_pool: MakePool, garbage: bytes
) -> None:
    async def babble(peer: Peer) -> None:
        await peer.request()
        peer.send(garbage + b"\r\n\r\n" + b"\x00" * 64)
        await peer.until_eof()

    server = await serve(babble)
    pool = make_pool(server.url)
    with pytest.raises(TransportError, match=r"not valid HTTP/1\.1") as info:
        await post(pool, server)
    assert not info.value.connect_failed
    assert not isinstance(info.value, RequestTimeoutError)
    await until(lambda: server.eofs == 1)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "a\r\nX-Injected: 1"},
        {"X-Note": "a\nb"},
        {"X-Note": "a\rb"},
        {"X-Note\r\nX-Injected": "1"},
    ],
)
async def test_a_line_break_in_a_header_is_refused_before_connecting(
    serve: Serve, make_pool: MakePool, headers: dict[str, str]
) -> None:
    server = await serve(answering())
    pool = make_pool(server.url)
    with pytest.raises(ConfigurationError, match="line break"):
        await pool.send("POST", yarl.URL(f"{server.url}/jobs"), headers, b"{}")
    assert (await post(pool, server)).body == JOB
    assert server.connections == 1
    assert [r.headers.get("x-injected") for r in server.requests] == [None]


# -- what is sent ---------------------------------------------------------------------------------


async def test_the_exact_request_bytes(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(answering())
    pool = make_pool(server.url)
    url = yarl.URL(f"{server.url}/jobs/c%20d/run?x=1&token=t0k")
    headers = {"Authorization": "k", "Content-Type": "application/json"}
    await pool.send("POST", url, headers, b'{"n":1}')
    await pool.send("GET", yarl.URL(f"{server.url}/jobs/j"), {"Accept": "application/json"}, None)
    await pool.send("POST", yarl.URL(f"{server.url}/jobs/e"), {}, None)
    assert [r.raw for r in server.requests] == [
        (
            b"POST /jobs/c%%20d/run?x=1&token=t0k HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\n"
            b"Authorization: k\r\n"
            b"Content-Type: application/json\r\n"
            b"Accept-Encoding: identity\r\n"
            b"Content-Length: 7\r\n"
            b"\r\n"
            b'{"n":1}'
        )
        % server.port,
        b"GET /jobs/j HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: application/json\r\n"
        b"Accept-Encoding: identity\r\n\r\n" % server.port,
        b"POST /jobs/e HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n"
        b"Content-Length: 0\r\n\r\n" % server.port,
    ]
    assert server.connections == 1


async def test_the_pool_serves_its_origin_only() -> None:
    pool = Http1Pool(
        yarl.URL("https://api.example.test"),
        limit=1,
        connect_timeout=None,
        read_timeout=None,
        total_timeout=None,
    )
    assert pool.serves(yarl.URL("https://api.example.test/jobs/x?token=t"))
    assert pool.serves(yarl.URL("https://api.example.test:443/jobs"))
    assert not pool.serves(yarl.URL("http://api.example.test/jobs"))
    assert not pool.serves(yarl.URL("https://api.example.test:8443/jobs"))
    assert not pool.serves(yarl.URL("https://other.example.test/jobs"))


@pytest.mark.parametrize("origin", ["ftp://host", "/jobs", "http://"])
def test_the_pool_needs_an_http_origin(origin: str) -> None:
    with pytest.raises(ConfigurationError):
        Http1Pool(
            yarl.URL(origin), limit=1, connect_timeout=None, read_timeout=None, total_timeout=None
        )


# -- cancellation and odd answers -----------------------------------------------------------------


async def test_cancelling_a_send_closes_its_connection(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(per_connection(listen_then_wait_for_eof, answering()))
    pool = make_pool(server.url)
    sending = asyncio.create_task(post(pool, server))
    await until(lambda: len(server.requests) == 1)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await until(lambda: server.eofs == 1)
    assert (await post(pool, server)).body == JOB
    assert server.connections == 2


@pytest.mark.parametrize("split", [False, True])
async def test_an_interim_100_continue_is_skipped(
    serve: Serve, make_pool: MakePool, split: bool
) -> None:
    async def continue_then_answer(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n")
            if split:
                await peer.writer.drain()
                await asyncio.sleep(0.01)
            peer.send(answer(headers={"X-Final": "1"}))

    server = await serve(continue_then_answer)
    pool = make_pool(server.url)
    for _ in range(2):
        got = await post(pool, server)
        assert (got.status, got.body) == (200, JOB)
        assert got.headers["x-final"] == "1"
        assert "x-interim" not in got.headers
    assert server.connections == 1


async def test_unsolicited_bytes_on_an_idle_connection_drop_it(
    serve: Serve, make_pool: MakePool
) -> None:
    async def then_more(peer: Peer) -> None:
        await peer.request()
        peer.send(answer())
        await peer.writer.drain()
        await asyncio.sleep(0.01)
        peer.send(answer(b"unasked"))
        await peer.until_eof()

    server = await serve(per_connection(then_more, answering()))
    pool = make_pool(server.url)
    assert (await post(pool, server)).body == JOB
    await until(lambda: server.eofs == 1)
    assert (await post(pool, server)).body == JOB
    assert server.connections == 2


@pytest.mark.parametrize(
    "extra", [answer(b"unasked"), b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"H"]
)
async def test_bytes_after_the_answer_drop_the_connection(
    serve: Serve, make_pool: MakePool, extra: bytes
) -> None:
    async def answer_and_more(peer: Peer) -> None:
        await peer.request()
        peer.send(answer() + extra)
        await peer.until_eof()

    server = await serve(per_connection(answer_and_more, answering(lambda _: answer(b'"second"'))))
    pool = make_pool(server.url)
    assert (await post(pool, server)).body == JOB
    assert (await post(pool, server)).body == b'"second"'
    assert server.connections == 2


async def test_closing_the_pool_closes_idle_connections_and_refuses_sends(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answering())
    pool = make_pool(server.url)
    await asyncio.gather(post(pool, server), post(pool, server))
    assert server.connections == 2
    await pool.close()
    await until(lambda: server.eofs == 2)
    with pytest.raises(ConfigurationError, match="closed"):
        await post(pool, server)


async def test_a_connection_in_use_closes_when_its_exchange_ends_after_close(
    serve: Serve, make_pool: MakePool
) -> None:
    go = asyncio.Event()

    async def held(peer: Peer) -> None:
        while await peer.request() is not None:
            await go.wait()
            peer.send(answer())

    server = await serve(held)
    pool = make_pool(server.url)
    sending = asyncio.create_task(post(pool, server))
    await until(lambda: len(server.requests) == 1)
    await pool.close()
    go.set()
    assert (await sending).body == JOB
    await until(lambda: server.eofs == 1)


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server_context(ca: trustme.CA, name: str = "127.0.0.1") -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def tls_client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_origin_works_and_reuses_its_connection(
    serve: Serve, make_pool: MakePool, ca: trustme.CA
) -> None:
    server = await serve(answering(), tls_server_context(ca))
    origin = f"https://127.0.0.1:{server.port}"
    pool = make_pool(origin, ssl_context=tls_client_context(ca))
    for _ in range(3):
        got = await pool.send("POST", yarl.URL(f"{origin}/jobs"), {}, b"{}")
        assert got.body == JOB
    assert server.connections == 1
    assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"


async def test_https_answer_framed_by_close(
    serve: Serve, make_pool: MakePool, ca: trustme.CA
) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.request()
        peer.send(answer(length=False))
        await peer.hang_up()

    server = await serve(until_close, tls_server_context(ca))
    origin = f"https://127.0.0.1:{server.port}"
    pool = make_pool(origin, ssl_context=tls_client_context(ca))
    assert (await pool.send("POST", yarl.URL(f"{origin}/jobs"), {}, b"{}")).body == JOB


@pytest.mark.parametrize("mismatch", ["untrusted CA", "other name"])
async def test_https_with_a_certificate_not_trusted_is_connect_failed(
    serve: Serve, make_pool: MakePool, ca: trustme.CA, mismatch: str
) -> None:
    if mismatch == "untrusted CA":
        server_context, client_ca = tls_server_context(ca), trustme.CA()
    else:
        server_context, client_ca = tls_server_context(ca, "api.example.test"), ca
    server = await serve(answering(), server_context)
    origin = f"https://127.0.0.1:{server.port}"
    pool = make_pool(origin, ssl_context=tls_client_context(client_ca))
    with pytest.raises(TransportError, match="could not connect") as info:
        await pool.send("POST", yarl.URL(f"{origin}/jobs"), {}, b"{}")
    assert info.value.connect_failed
    assert server.requests == []


# -- through ChutesSession ------------------------------------------------------------------------


def session_for(server: RawServer, **settings: Any) -> ChutesSession:
    settings.setdefault("api_key", API_KEY)
    return ChutesSession(base_url=server.url, **settings)


async def create(session: ChutesSession, path: str = "/jobs/c/m", **options: Any) -> Any:
    with bulk_traffic():
        return await session.request("POST", path, kind=CallKind.CREATE, json={"n": 1}, **options)


async def test_fast_lane_sends_credentials_and_user_agent(serve: Serve) -> None:
    server = await serve(answering())
    async with session_for(server) as session:
        assert await create(session) == {"job_id": "2f0c7e8e", "finished_at": None}
        assert await create(session) == {"job_id": "2f0c7e8e", "finished_at": None}
    first = server.requests[0]
    assert (first.method, first.target, first.body) == ("POST", "/jobs/c/m", b'{"n":1}')
    assert first.headers["authorization"] == API_KEY
    assert first.headers["user-agent"] == f"chutes-jobs/{chutes_jobs.__version__}"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["accept"] == "application/json"
    assert first.headers["accept-encoding"] == "identity"
    assert server.connections == 1


async def test_fast_lane_create_is_not_resent_once_sent(serve: Serve, fake_time: FakeTime) -> None:
    async def hang_up(peer: Peer) -> None:
        await peer.request()
        await peer.hang_up()

    server = await serve(hang_up)
    async with session_for(server, retry_policy=fake_time.policy(max_attempts=4)) as session:
        with pytest.raises(TransportError) as info:
            await create(session)
    assert not info.value.connect_failed
    assert info.value.attempts == 1
    assert len(server.requests) == 1
    assert server.requests[0].headers["accept-encoding"] == "identity"


async def test_fast_lane_read_timeout_on_create_is_not_resent(
    serve: Serve, fake_time: FakeTime
) -> None:
    server = await serve(listen_then_wait_for_eof)
    policy = fake_time.policy(max_attempts=4)
    async with session_for(server, retry_policy=policy, read_timeout=0.2) as session:
        with pytest.raises(RequestTimeoutError) as info:
            await create(session)
    assert info.value.attempts == 1
    assert len(server.requests) == 1


async def test_fast_lane_refused_create_is_resent(
    fake_time: FakeTime, http1_sends: list[str]
) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    policy = fake_time.policy(max_attempts=3)
    async with ChutesSession(base_url=base, api_key=API_KEY, retry_policy=policy) as session:
        with pytest.raises(TransportError) as info:
            await create(session)
    assert info.value.connect_failed
    assert info.value.attempts == 3
    assert http1_sends == ["POST"] * 3
    assert len(fake_time.sleeps) == 2


def close_the_first_new_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of a server closing a connection just made, before the request goes out."""
    connect = Http1Pool._connect
    closed: list[bool] = []

    async def connect_then_lose(self: Http1Pool, *args: Any) -> Any:
        connection = await connect(self, *args)
        if not closed:
            closed.append(True)
            connection.close()
        return connection

    monkeypatch.setattr(Http1Pool, "_connect", connect_then_lose)


async def test_a_connection_closed_before_the_request_went_out_is_connect_failed(
    serve: Serve, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    close_the_first_new_connection(monkeypatch)
    server = await serve(answering())
    pool = make_pool(server.url)
    with pytest.raises(TransportError, match="closed before the request was sent") as info:
        await post(pool, server)
    assert info.value.connect_failed  # provably not sent: safe to send again
    assert (await post(pool, server)).status == 200
    assert len(server.requests) == 1


async def test_fast_lane_create_not_sent_is_resent(
    serve: Serve, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    close_the_first_new_connection(monkeypatch)
    server = await serve(answering())
    async with session_for(server, retry_policy=fake_time.policy(max_attempts=3)) as session:
        job = await create(session)
    assert job["job_id"]
    assert len(server.requests) == 1  # one create reached the server: one job
    assert len(fake_time.sleeps) == 1


async def test_fast_lane_429_is_a_rate_limit_error_with_retry_after(
    serve: Serve, fake_time: FakeTime
) -> None:
    limited = answer(b'{"detail":"slow down"}', "429 Too Many Requests", {"Retry-After": "7"})
    server = await serve(answering(lambda _: limited))
    policy = fake_time.policy(retry_rate_limits=False)
    async with session_for(server, retry_policy=policy) as session:
        with pytest.raises(RateLimitError) as info:
            await create(session)
    assert info.value.retry_after == 7
    assert info.value.detail == "slow down"
    assert not info.value.is_quota
    assert info.value.attempts == 1
    assert len(server.requests) == 1


async def test_fast_lane_html_on_200_is_a_protocol_error(serve: Serve) -> None:
    page = answer(b"<html><title>Portal</title></html>", headers={"Content-Type": "text/html"})
    server = await serve(answering(lambda _: page))
    async with session_for(server) as session:
        with pytest.raises(ProtocolError, match="an HTML page") as info:
            await create(session)
    assert info.value.status == 200
    assert "Portal" in info.value.body_excerpt


def _not_found(_: Request) -> bytes:
    return answer(b'{"detail":"no such job"}', "404 Not Found")


async def _hang_up(peer: Peer) -> None:
    await peer.request()
    await peer.hang_up()


async def _babble(peer: Peer) -> None:
    await peer.request()
    peer.send(b"NOT HTTP\r\n\r\n")
    await peer.until_eof()


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (answering(_not_found), NotFoundError),
        (_hang_up, TransportError),
        (listen_then_wait_for_eof, RequestTimeoutError),
        (_babble, TransportError),
    ],
)
async def test_the_token_never_shows_in_errors(
    serve: Serve, fake_time: FakeTime, handler: Handler, error: type[Exception]
) -> None:
    server = await serve(handler)
    policy = fake_time.policy(max_attempts=1)
    async with session_for(server, retry_policy=policy, read_timeout=0.2) as session:
        with pytest.raises(error) as info, bulk_traffic():
            await session.request("GET", "/jobs/j", kind=CallKind.READ, auth=False, token=TOKEN)
    assert server.requests[0].target == f"/jobs/j?token={TOKEN}"
    assert server.requests[0].headers["accept-encoding"] == "identity"
    seen = [str(info.value), repr(info.value), str(getattr(info.value, "url", ""))]
    assert all(TOKEN not in text for text in seen)
    assert "token=***" in str(info.value)


async def test_a_callers_aiohttp_session_is_used_instead_of_the_lane(serve: Serve) -> None:
    server = await serve(answering())
    async with aiohttp.ClientSession() as http, session_for(server, session=http) as session:
        assert await create(session) == {"job_id": "2f0c7e8e", "finished_at": None}
    [request] = server.requests
    assert request.headers["authorization"] == API_KEY
    assert "gzip" in request.headers["accept-encoding"]


async def test_a_url_off_base_url_goes_over_aiohttp(serve: Serve) -> None:
    lane, other = await serve(answering()), await serve(answering())
    async with session_for(lane) as session:
        assert await create(session, f"{other.url}/jobs/c/m") is not None
        assert await create(session) is not None
    assert "gzip" in other.requests[0].headers["accept-encoding"]
    assert lane.requests[0].headers["accept-encoding"] == "identity"


async def test_closing_the_session_closes_the_lanes_idle_connections(serve: Serve) -> None:
    server = await serve(answering())
    session = session_for(server)
    async with session:
        await create(session)
        assert server.eofs == 0
    await until(lambda: server.eofs == 1)
    assert server.open == 0


def test_one_session_creates_across_event_loops() -> None:
    """A session used by one ``asyncio.run`` after another (not closed in between): each loop
    gets connections of its own, over one keep-alive connection per loop."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        peers: ClassVar[set[int]] = set()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            Handler.peers.add(self.client_address[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(JOB)))
            self.end_headers()
            self.wfile.write(JOB)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session = ChutesSession(base_url=f"http://127.0.0.1:{server.server_port}", api_key=API_KEY)

    async def two_creates() -> list[Any]:
        return [await create(session), await create(session)]

    try:
        first = asyncio.run(two_creates())
        second = asyncio.run(two_creates())
        asyncio.run(session.close())
    finally:
        server.shutdown()
        server.server_close()
    assert [job["job_id"] for job in first + second] == ["2f0c7e8e"] * 4
    assert len(Handler.peers) == 2  # one connection per loop, kept alive within it
