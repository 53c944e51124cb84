"""The request pipeline: every call to the API goes through :class:`Transport`.

One JSON call (:meth:`Transport.request`) is: check it may be sent at all, serialize the body
once, then under the retry policy for its :class:`~chutes_jobs.CallKind`, per attempt: sign
(API key header or a hotkey signature over the exact body bytes, the worker's ``token=``),
send over the lane :meth:`Transport._lane` picks, turn an error status into its
:class:`~chutes_jobs.APIStatusError` subclass and decode the JSON answer (:mod:`.answers`,
the same for both lanes). A streaming call (:meth:`Transport.send_once`) is one attempt over
aiohttp whose 2xx response is handed over with its body unread.

The lane is chosen in one place, :meth:`Transport._lane`: JSON calls of a ``submit_many`` run
(creates and polls, :func:`bulk_traffic`) go over the lean HTTP/1.1 pool (:mod:`.http1`, a
third of aiohttp's CPU per call) when the URL is on ``base_url`` and the transport owns its
connections; everything else goes over aiohttp (:mod:`.aiohttp_lane`).
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import ipaddress
import json as jsonlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final

import aiohttp
import yarl

from ..auth import UserAuth
from ..errors import ConfigurationError
from ..instrumentation.hooks import Hook, HookSet
from ..instrumentation.scopes import RequestScope, request_observer
from ..retry import CallKind, RetryPolicy
from .aiohttp_lane import exchange, read_answer
from .answers import answer_error, json_answer
from .http1 import Http1Pool
from .routes import route_template

__all__ = ["NO_BODY", "Transport", "bulk_traffic"]

JSON_CONTENT_TYPE: Final = "application/json"
_JSON_HEADERS: Final = {"Accept": JSON_CONTENT_TYPE}
_JSON_BODY_HEADERS: Final = {"Accept": JSON_CONTENT_TYPE, "Content-Type": JSON_CONTENT_TYPE}
#: Relative paths whose URL a transport keeps (the create path of a bulk run is always the same).
_URL_CACHE_SIZE: Final = 1024

#: Set in the tasks of a ``submit_many`` run: their JSON calls are many and alike.
_BULK_TRAFFIC: Final = contextvars.ContextVar("chutes_jobs_bulk_traffic", default=False)


class _NoBody(enum.Enum):
    NO_BODY = enum.auto()


#: Marks "no JSON body" (``None`` is a valid JSON body: ``null``).
NO_BODY: Final = _NoBody.NO_BODY


@contextmanager
def bulk_traffic() -> Iterator[None]:
    """Within it, this task's JSON calls (and those of the tasks it starts) are bulk traffic:
    :meth:`Transport._lane` may send them over the HTTP/1.1 pool."""
    reset = _BULK_TRAFFIC.set(True)
    try:
        yield
    finally:
        _BULK_TRAFFIC.reset(reset)


@functools.lru_cache(maxsize=256)
def _is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (cached: every request of a session asks again)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_insecure(url: yarl.URL) -> bool:
    """Plain http to a host other than this machine."""
    return url.scheme == "http" and not _is_loopback(url.host)


#: ``json.dumps(body, separators=(",", ":"))`` without building an encoder per call.
_COMPACT_JSON: Final = jsonlib.JSONEncoder(separators=(",", ":"))


def _encode_json(body: Any) -> bytes:
    """The one serialization of a JSON body: compact, so the signed bytes are the sent bytes."""
    try:
        return _COMPACT_JSON.encode(body).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"the request body cannot be sent as JSON: {exc}") from None


def _signable_bytes(body: Any) -> bytes | None:
    """The body as bytes when it can be signed (bytes-like), else ``None``."""
    if type(body) is bytes:  # the JSON path: no copy
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return None


class Transport:
    """Credentials, timeouts, retries and the connection pools: how calls reach the API.

    :class:`~chutes_jobs.ChutesSession` is one; the layers below it (jobs, downloads, the
    worker calls) talk to the API only through these methods.
    """

    def __init__(
        self,
        *,
        base_url: yarl.URL,
        auth: UserAuth,
        user_agent: str,
        connect_timeout: float,
        read_timeout: float,
        request_timeout: float,
        retry_policy: RetryPolicy,
        connection_limit: int,
        allow_insecure_http: bool,
        session: aiohttp.ClientSession | None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        self.base_url = base_url
        #: The instrumentation hooks of this transport's calls (process-wide ones first).
        self.hooks = HookSet(hooks)
        self.retry_policy = retry_policy
        self.user_agent = user_agent
        self.allow_insecure_http = allow_insecure_http
        self.connection_limit = connection_limit
        self.timeout = aiohttp.ClientTimeout(
            total=request_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        #: Timeout for streaming bodies: no total, so multi-GB transfers are not cut short.
        self.transfer_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._auth = auth
        self._external_session = session
        self._urls: dict[str, yarl.URL] = {}
        self._urls_base = self.base_url
        self._owned_session: aiohttp.ClientSession | None = None
        self._http1: Http1Pool | None = None
        if self._auth.has_credentials:
            self._refuse_insecure(self.base_url, "credentials")

    @property
    def http(self) -> aiohttp.ClientSession:
        """The underlying ``aiohttp.ClientSession`` (created on first use)."""
        if self._external_session is not None:
            return self._external_session
        if self._owned_session is None or self._owned_session.closed:
            connector = aiohttp.TCPConnector(limit=self.connection_limit)
            self._owned_session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._owned_session

    @property
    def has_user_credentials(self) -> bool:
        """True when an API key or a hotkey is set (user calls are possible)."""
        return self._auth.has_credentials

    @property
    def auth_kind(self) -> str:
        """Which user credentials are set: ``api_key``, ``hotkey``, ``api_key+hotkey``, ``none``."""
        return self._auth.kind

    async def close(self) -> None:
        """Close the connection pools this transport created (a wrapped session is left open)."""
        if self._http1 is not None:
            await self._http1.close()
            self._http1 = None
        if self._owned_session is not None:
            await self._owned_session.close()
            self._owned_session = None

    def url(self, path: str | yarl.URL) -> yarl.URL:
        """``"/jobs/x"`` -> ``base_url + "/jobs/x"``; an absolute URL is returned as is."""
        if self._urls_base is not self.base_url:  # base_url was reassigned
            self._urls.clear()
            self._urls_base = self.base_url
        if isinstance(path, str):
            cached = self._urls.get(path)
            if cached is not None:
                return cached
        candidate = path if isinstance(path, yarl.URL) else yarl.URL(path)
        if candidate.is_absolute():
            return candidate
        url = yarl.URL(f"{self.base_url}/{str(path).lstrip('/')}")
        if isinstance(path, str):
            if len(self._urls) >= _URL_CACHE_SIZE:  # job ids come and go: start afresh
                self._urls.clear()
            self._urls[path] = url
        return url

    async def request(
        self,
        method: str,
        path: str | yarl.URL,
        *,
        kind: CallKind,
        json: Any = NO_BODY,
        auth: bool = True,
        token: str | None = None,
        retry_policy: RetryPolicy | None = None,
        decode: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Any:
        """Send a JSON call with retries (by ``kind``) and return the decoded JSON answer.

        ``retry_policy`` replaces the transport's policy for this call only. The lane is
        chosen by :meth:`_lane`. ``decode`` reads the JSON object within each attempt (say,
        ``job_from_answer``), so an answer it refuses is retried as any unreadable 2xx is;
        its result is returned.

        Raises :class:`~chutes_jobs.ConfigurationError` before sending when the call cannot be
        authenticated, an :class:`~chutes_jobs.APIStatusError` subclass for an error status,
        :class:`~chutes_jobs.ProtocolError` when a 2xx answer is not a JSON object (or
        ``decode`` refuses it) on every attempt the policy allows (at once for a create),
        :class:`~chutes_jobs.errors.AnswerTooLargeError` over 32 MiB (not retried), and
        :class:`~chutes_jobs.TransportError` when the connection fails; ``.attempts`` tells
        how many attempts were made.
        """
        url = self.url(path)
        body = None if json is NO_BODY else _encode_json(json)
        self._check_sendable(method, url, auth=auth, token=token, body=body)
        target = url if token is None else url.update_query(token=token)
        extra = _JSON_BODY_HEADERS if body is not None else _JSON_HEADERS
        lane = self._lane(target)
        observer = request_observer(
            self.hooks,
            method,
            url,
            route_of=route_template,
            target=path,
            base_url=self.base_url,
            token=token is not None,
            kind=kind,
        )

        def send(headers: dict[str, str], probe: RequestScope | None) -> Awaitable[Any]:
            # The lane's coroutine itself, not one more coroutine wrapping it: every resumption
            # of the attempt would go through that one too.
            if lane is not None:
                return _send_json_http1(lane, method, target, url, headers, body, probe)
            return self._send_json_aiohttp(method, target, url, headers, body, probe)

        async def attempt(number: int) -> Any:
            headers = self._headers(method, auth=auth, body=body)
            headers.update(extra)
            if observer is None:
                data = await send(headers, None)
            else:
                with observer.attempt(number) as probe:
                    data = await send(headers, probe)
            return data if decode is None else decode(data)

        return await (retry_policy or self.retry_policy).run(kind, attempt, hooks=self.hooks)

    def _lane(self, url: yarl.URL) -> Http1Pool | None:
        """The lane of a JSON call: the HTTP/1.1 pool, or None for aiohttp. Decided here only.

        The pool carries bulk traffic (:func:`bulk_traffic`) to ``base_url``'s origin, and
        never when the caller's own aiohttp session was given (its settings are the caller's
        to keep). The pool is created on first use.
        """
        if not _BULK_TRAFFIC.get() or self._external_session is not None:
            return None
        # A pool left open by an earlier event loop (asyncio.run per batch) holds connections
        # this loop cannot use: start afresh.
        if self._http1 is None or self._http1.loop is not asyncio.get_running_loop():
            self._http1 = Http1Pool(
                self.base_url.origin(),
                limit=self.connection_limit,
                connect_timeout=self.timeout.sock_connect,
                read_timeout=self.timeout.sock_read,
                total_timeout=self.timeout.total,
            )
        return self._http1 if self._http1.serves(url) else None

    async def _send_json_aiohttp(
        self,
        method: str,
        target: yarl.URL,
        url: yarl.URL,
        headers: dict[str, str],
        body: bytes | None,
        probe: RequestScope | None,
    ) -> dict[str, Any]:
        """One attempt of a JSON call over aiohttp: the decoded answer, or our error."""
        timeout = self.timeout
        async with exchange(self.http, method, target, body, headers, timeout, probe) as response:
            raw = await read_answer(response, method, target)
            return json_answer(raw, response.status, response.content_type, method, url)

    @asynccontextmanager
    async def send_once(
        self,
        method: str,
        url: str | yarl.URL,
        *,
        auth: bool = True,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        json: Any = NO_BODY,
        timeout: aiohttp.ClientTimeout | None = None,
        attempt: int = 1,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Make one HTTP attempt and yield the 2xx response, its body unread, for streaming.

        ``auth`` adds user auth (API key header, or a hotkey signature over the exact body
        bytes); ``token`` adds ``?token=`` (never logged). An error status raises its
        :class:`~chutes_jobs.APIStatusError` subclass; aiohttp's failures, here or while the
        caller reads the body, raise :class:`~chutes_jobs.TransportError`. Redirects are not
        followed. ``attempt`` is this attempt's number in the caller's retry loop (for the
        instrumentation hooks, whose request events cover the caller's reading of the body).
        """
        target = self.url(url)
        if json is not NO_BODY:
            data = _encode_json(json)
        self._check_sendable(method, target, auth=auth, token=token, body=data)
        observer = request_observer(
            self.hooks,
            method,
            target,
            route_of=route_template,
            target=target,
            base_url=self.base_url,
            token=token is not None,
            kind=CallKind.TRANSFER,
        )
        if token is not None:
            target = target.update_query(token=token)
        request_headers = self._headers(method, auth=auth, body=data)
        if json is not NO_BODY:
            request_headers["Content-Type"] = JSON_CONTENT_TYPE
        request_headers.update(headers or {})
        timeout = timeout or self.timeout
        if observer is None:
            async with exchange(
                self.http, method, target, data, request_headers, timeout
            ) as answer:
                yield answer
            return
        with observer.attempt(attempt) as probe:
            async with exchange(
                self.http, method, target, data, request_headers, timeout, probe
            ) as answer:
                yield answer

    # -- checks and headers ----------------------------------------------------------------

    def _headers(self, method: str, *, auth: bool, body: Any) -> dict[str, str]:
        """User-Agent and, with ``auth``, the auth headers (signed anew: a fresh nonce)."""
        headers = {"User-Agent": self.user_agent}
        if auth:
            headers.update(self._auth.headers(method, _signable_bytes(body)))
        return headers

    def _check_sendable(
        self, method: str, url: yarl.URL, *, auth: bool, token: str | None, body: Any
    ) -> None:
        """Raise :class:`ConfigurationError` for a call that must not be sent at all.

        Checked once per call, before the first attempt.
        """
        if auth:
            self._auth.check(method, _signable_bytes(body))
            self._refuse_insecure(url, "credentials")
        if token is not None:
            self._refuse_insecure(url, "a job token")

    def _refuse_insecure(self, url: yarl.URL, what: str) -> None:
        if _is_insecure(url) and not self.allow_insecure_http:
            raise ConfigurationError(
                f"refusing to send {what} over plain http to {url.host}: use https, or pass "
                "allow_insecure_http=True if this network is trusted"
            )


async def _send_json_http1(
    pool: Http1Pool,
    method: str,
    target: yarl.URL,
    url: yarl.URL,
    headers: dict[str, str],
    body: bytes | None,
    probe: RequestScope | None,
) -> dict[str, Any]:
    """One attempt of a JSON call over the HTTP/1.1 pool: the decoded answer, or our error.

    ``target`` is ``url`` with its ``token=``, if any; ``probe`` gets the answer's status.
    """
    answer = await pool.send(method, target, headers, body)
    if probe is not None:
        probe.status = answer.status
    if not 200 <= answer.status < 300:
        raise answer_error(answer.status, answer.headers, answer.body, method, target)
    return json_answer(answer.body, answer.status, answer.content_type, method, url)
