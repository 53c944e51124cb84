"""A lean HTTP/1.1 keep-alive pool for small JSON calls: the creates of a ``submit_many`` run.

aiohttp's client spends about 70 us of CPU on each request. A bulk run's creates are all alike
(one origin, a small JSON body, a small JSON answer), so they go over this pool instead: one
``asyncio.Protocol`` per connection, answers parsed by llhttp (through ``httptools``), each
request written in one ``write``. It costs about a third of aiohttp's CPU per request.

It does no redirects, proxies or upgrades, and refuses answers over :data:`MAX_ANSWER_BYTES`
(the limit the aiohttp lane applies too, :mod:`.answers`) without a retry.
A request is never re-sent here: a connection that drops once the request went out raises
:class:`~chutes_jobs.TransportError` with ``connect_failed`` false, and the caller's retry
policy decides (a create is not re-sent). Idle connections are dropped after
:data:`IDLE_EXPIRY` seconds, or sooner when the server's ``Keep-Alive: timeout`` says so, to
stay clear of a server closing one while a request is on its way.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
import zlib
from collections.abc import Mapping
from typing import Final

import httptools
import yarl

from .._redact import redact_url
from ..errors import (
    AnswerTooLargeError,
    ConfigurationError,
    RequestTimeoutError,
    TransportError,
)
from .answers import MAX_ANSWER_BYTES

__all__ = ["IDLE_EXPIRY", "MAX_ANSWER_BYTES", "Http1Answer", "Http1Pool"]

#: Seconds an idle connection is kept (servers commonly close idle ones after 5 s or more).
IDLE_EXPIRY: Final = 2.0
_DECODERS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 15}
_KEEP_ALIVE_TIMEOUT: Final = re.compile(r"timeout\s*=\s*(\d+)", re.IGNORECASE)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class Http1Answer:
    """One answer: its status, its headers (names lower-cased) and its whole decoded body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self) -> str:
        """The media type, without parameters (``application/json``)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()


class _Failure(Exception):
    """How an exchange failed, before it is told in the caller's terms.

    ``not_sent``: the request provably never left (the connection was gone before it);
    ``too_large``: the answer is over :data:`MAX_ANSWER_BYTES` (it would be again).
    """

    def __init__(
        self, what: str, *, timeout: bool = False, not_sent: bool = False, too_large: bool = False
    ) -> None:
        super().__init__(what)
        self.timeout = timeout
        self.not_sent = not_sent
        self.too_large = too_large


class _Connection(asyncio.Protocol):
    """One keep-alive connection, carrying one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Http1Answer] | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.closed = False
        self.keep_alive = True
        self.headers_done = False
        self.idle_since = 0.0
        self.idle_expiry = IDLE_EXPIRY
        self.last_data = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection is not to be trusted
            self.close()
            return
        self.last_data = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(_Failure(f"the answer is not valid HTTP/1.1 ({exc})"))

    def eof_received(self) -> bool:
        if self.waiter is not None and self.reads_until_close():
            self.on_message_complete()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None:
            what = f"the connection was lost ({exc})" if exc else "the server closed the connection"
            self.fail(_Failure(f"{what} before the whole answer arrived"))

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:  # more bytes after the answer: the connection is not to be trusted
            self.close()
        self.headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_ANSWER_BYTES:
            self.fail(
                _Failure(f"the answer is larger than {MAX_ANSWER_BYTES} bytes", too_large=True)
            )
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = {}
            return
        waiter, headers, body = self.waiter, self.headers, b"".join(self.body)
        self.waiter, self.headers, self.body, self.size = None, {}, [], 0
        self.keep_alive = self.keep_alive and self.parser.should_keep_alive()
        if "keep-alive" in headers:
            self.note_keep_alive(headers["keep-alive"])
        if waiter is None or waiter.done():
            return
        try:
            waiter.set_result(Http1Answer(status, headers, _decoded(body, headers)))
        except _Failure as failure:
            self.close()
            waiter.set_exception(failure)

    # -- the exchange --------------------------------------------------------------------------

    def reads_until_close(self) -> bool:
        """Whether the answer under way is framed by the end of the connection."""
        return (
            self.headers_done
            and self.parser.get_status_code() >= 200
            and "content-length" not in self.headers
            and "transfer-encoding" not in self.headers
        )

    def note_keep_alive(self, value: str) -> None:
        """Expire this connection a second before the server's ``Keep-Alive: timeout=N``."""
        found = _KEEP_ALIVE_TIMEOUT.search(value)
        if found:
            self.idle_expiry = min(self.idle_expiry, max(int(found.group(1)) - 1.0, 0.0))

    def start(self, request: bytes) -> asyncio.Future[Http1Answer]:
        """Write ``request``; the future is its answer."""
        assert self.transport is not None
        if self.closed or self.transport.is_closing():  # closed by the server since connecting
            raise _Failure("the connection closed before the request was sent", not_sent=True)
        self.waiter = self.loop.create_future()
        self.last_data = self.loop.time()
        self.transport.write(request)
        return self.waiter

    def fail(self, failure: _Failure) -> None:
        """End the exchange under way (if any) with ``failure``, and the connection."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)
        self.close()

    def close(self) -> None:
        """Drop the connection at once (an exchange cut short leaves it unusable)."""
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def reusable(self, now: float) -> bool:
        """Open, and idle for less than its expiry."""
        return (
            self.keep_alive
            and not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < self.idle_expiry
        )


def _decoded(body: bytes, headers: Mapping[str, str]) -> bytes:
    """``body`` without its Content-Encoding (gzip and deflate; identity is asked for), and
    no larger than :data:`MAX_ANSWER_BYTES` once decoded."""
    coding = headers.get("content-encoding", "identity").strip().lower()
    if coding == "identity" or not body:
        return body
    wbits = _DECODERS.get(coding)
    if wbits is None:
        raise _Failure(f"the answer has the unsupported Content-Encoding {coding!r}")
    decoder = zlib.decompressobj(wbits)
    try:
        decoded = decoder.decompress(body, MAX_ANSWER_BYTES + 1)
    except zlib.error as exc:
        raise _Failure(f"the {coding} answer cannot be decoded ({exc})") from None
    if len(decoded) > MAX_ANSWER_BYTES:
        raise _Failure(
            f"the answer is larger than {MAX_ANSWER_BYTES} bytes once decoded", too_large=True
        )
    if not decoder.eof:
        raise _Failure(f"the {coding} answer cannot be decoded (it is cut short)")
    return decoded


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one origin, at most ``limit`` at once.

    ``read_timeout`` is the silence tolerated while an answer is awaited, ``total_timeout``
    the whole exchange; both in seconds, None for no limit.
    """

    def __init__(
        self,
        origin: yarl.URL,
        *,
        limit: int,
        connect_timeout: float | None,
        read_timeout: float | None,
        total_timeout: float | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if origin.scheme not in _DEFAULT_PORTS or not origin.raw_host:
            raise ConfigurationError(f"an http(s) origin is needed, got {origin}")
        self.scheme, self.host = origin.scheme, origin.raw_host
        self.port = origin.port or _DEFAULT_PORTS[self.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = self.port == _DEFAULT_PORTS[self.scheme]
        self._host_header = host if default_port else f"{host}:{self.port}"
        if self.scheme == "https":
            self._ssl: ssl.SSLContext | None = ssl_context or ssl.create_default_context()
        else:
            self._ssl = None
        self._connect_timeout = connect_timeout
        self._read_timeout = math.inf if read_timeout is None else read_timeout
        self._total_timeout = math.inf if total_timeout is None else total_timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._closed = False
        #: The event loop the connections belong to (the pool is made in a running loop).
        self.loop = asyncio.get_running_loop()

    def serves(self, url: yarl.URL) -> bool:
        """Whether ``url`` is on this pool's origin."""
        return (
            url.raw_host == self.host
            and url.scheme == self.scheme
            and (url.port or _DEFAULT_PORTS.get(url.scheme)) == self.port
        )

    async def send(
        self, method: str, url: yarl.URL, headers: Mapping[str, str], body: bytes | None
    ) -> Http1Answer:
        """One request, one whole answer (any status): never re-sent.

        Raises :class:`~chutes_jobs.TransportError` (``connect_failed`` when the request
        provably never left: no connection, or one closed before it was written) or
        :class:`~chutes_jobs.RequestTimeoutError`.
        """
        request = self._request_bytes(method, url, headers, body)
        async with self._slots:
            try:
                connection = await self._connection()
                answer = await self._exchange(connection, request)
            except _Failure as failure:
                raise self._error(failure, method, url) from None
            self._release(connection)
            return answer

    async def close(self) -> None:
        """Close the idle connections; connections in use close when their exchange ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        if self.loop.is_closed():  # left by an earlier asyncio.run: gone with its loop
            return
        for connection in idle:
            connection.close()

    # -- connections ---------------------------------------------------------------------------

    async def _connection(self) -> _Connection:
        """An idle connection still fresh, or a new one."""
        if self._closed:
            raise ConfigurationError("the session is closed")
        now = self.loop.time()
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable(now):
                return connection
            connection.close()
        return await self._connect()

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await self.loop.create_connection(
                    lambda: _Connection(self.loop),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise _Failure("timed out connecting", timeout=True, not_sent=True) from None
        except OSError as exc:  # refused, unreachable, name not found, TLS refused
            raise _Failure(f"could not connect: {exc}", not_sent=True) from None
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.keep_alive and not connection.closed and not self._closed:
            connection.idle_since = self.loop.time()
            self._idle.append(connection)
        else:
            connection.close()

    # -- one exchange --------------------------------------------------------------------------

    def _request_bytes(
        self, method: str, url: yarl.URL, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        parts = [f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ConfigurationError(f"the {name.strip()!r} header holds a line break")
            parts.append(f"{name}: {value}\r\n")
        if "Accept-Encoding" not in headers:
            parts.append("Accept-Encoding: identity\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(f"Content-Length: {len(body or b'')}\r\n")
        parts.append("\r\n")
        head = "".join(parts).encode()
        return head + body if body else head

    async def _exchange(self, connection: _Connection, request: bytes) -> Http1Answer:
        """Send ``request`` and await its answer within the read and total timeouts."""
        waiter = connection.start(request)
        deadline = connection.last_data + self._total_timeout
        if deadline < math.inf or self._read_timeout < math.inf:
            self._arm_timer(connection, deadline)
        try:
            return await waiter
        except asyncio.CancelledError:  # the answer would arrive unasked: drop the connection
            connection.close()
            raise
        finally:
            if connection.timer is not None:
                connection.timer.cancel()
                connection.timer = None

    def _arm_timer(self, connection: _Connection, deadline: float) -> None:
        """Wake at the earlier of the deadline and the read timeout (re-armed, not reset, on
        every arrival: data arriving costs nothing)."""
        when = min(deadline, connection.last_data + self._read_timeout)
        connection.timer = self.loop.call_at(when, self._on_timer, connection, deadline)

    def _on_timer(self, connection: _Connection, deadline: float) -> None:
        connection.timer = None
        if connection.waiter is None:
            return
        now = self.loop.time()
        if now >= deadline or now - connection.last_data >= self._read_timeout:
            connection.fail(_Failure("timed out waiting for the answer", timeout=True))
        else:
            self._arm_timer(connection, deadline)

    @staticmethod
    def _error(failure: _Failure, method: str, url: yarl.URL) -> TransportError:
        where = f"{method} {redact_url(url)}"
        error_type: type[TransportError] = TransportError
        if failure.timeout:
            error_type = RequestTimeoutError
        elif failure.too_large:
            error_type = AnswerTooLargeError
        return error_type(
            f"{where}: {failure}", method=method, url=str(url), connect_failed=failure.not_sent
        )
