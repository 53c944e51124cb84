"""``ChutesSession``: settings, the aiohttp session, and the one path every request takes.

``send_once`` makes one HTTP attempt: it adds auth (API key header or a hotkey signature over
the exact body bytes) and the worker's ``token=``, maps aiohttp's exceptions in one place
(:func:`map_transport_errors`) and turns error answers into :class:`~chutes_jobs.APIStatusError`
subclasses. ``request`` serializes JSON once, runs ``send_once`` under the retry policy for the
call's :class:`~chutes_jobs.CallKind`, and decodes the JSON answer.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import json as jsonlib
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import aiohttp
import yarl

from ._bulk_options import DEFAULT_CANCEL_GRACE
from ._http1 import Http1Pool
from ._redact import redact, redact_url
from ._version import __version__
from .auth import ApiKeyAuth, HotkeyAuth, SigningKeypair, UserAuth, load_keypair
from .errors import (
    APIStatusError,
    ChutesError,
    ConfigurationError,
    ProtocolError,
    RequestTimeoutError,
    TransportError,
    error_for_status,
)
from .retry import CallKind, RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
    from os import PathLike

    from .bulk import BulkResult
    from .job import JobHandle
    from .models import Job
    from .polling import PollPolicy
    from .transfer import ProgressCallback

__all__ = ["DEFAULT_BASE_URL", "NO_BODY", "ChutesSession", "map_transport_errors"]

logger = logging.getLogger("chutes_jobs")

DEFAULT_BASE_URL: Final = "https://api.chutes.ai"
#: How much of an error answer is read to find its ``detail``.
ERROR_BODY_LIMIT: Final = 64 * 1024
JSON_CONTENT_TYPE: Final = "application/json"
_JSON_HEADERS: Final = {"Accept": JSON_CONTENT_TYPE}
_JSON_BODY_HEADERS: Final = {"Accept": JSON_CONTENT_TYPE, "Content-Type": JSON_CONTENT_TYPE}
#: Relative paths whose URL a session keeps (the create path of a bulk run is always the same).
_URL_CACHE_SIZE: Final = 1024

_HTML_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)

_ENV_SETTINGS: Final = {
    "api_key": "CHUTES_API_KEY",
    "base_url": "CHUTES_BASE_URL",
    "hotkey": "CHUTES_HOTKEY_SEED",
    "user_id": "CHUTES_USER_ID",
}


class _NoBody(enum.Enum):
    NO_BODY = enum.auto()


#: Marks "no JSON body" (``None`` is a valid JSON body: ``null``).
NO_BODY: Final = _NoBody.NO_BODY


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


def _safe_cause(exc: BaseException) -> BaseException | None:
    """``exc`` as a ``__cause__`` unless its text holds a secret (a token-bearing URL)."""
    text = str(exc)
    return exc if redact(text) == text else None


@contextmanager
def map_transport_errors(method: str, url: yarl.URL | str) -> Iterator[None]:
    """Turn aiohttp's exceptions into :class:`TransportError` / :class:`RequestTimeoutError`.

    The one place where transport failures are translated (:func:`_transport_error`).
    ``connect_failed`` is set when no connection was made, so the request provably never
    reached the server.
    """
    try:
        yield
    except ChutesError:  # already ours (RequestTimeoutError is a TimeoutError too)
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _transport_error(exc, method, url) from _safe_cause(exc)


def _transport_error(
    exc: TimeoutError | aiohttp.ClientError, method: str, url: yarl.URL | str
) -> ChutesError:
    """Our error for one of aiohttp's (the URL is redacted only now: failures are rare)."""
    where = f"{method} {redact_url(url)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError(
            f"{where}: timed out connecting", method=method, url=str(url), connect_failed=True
        )
    if isinstance(exc, TimeoutError):  # ServerTimeoutError and the total timeout
        return RequestTimeoutError(
            f"{where}: timed out waiting for the answer", method=method, url=str(url)
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp's own text names its TLS setting ("ssl:default") even for http:// URLs.
        reason = exc if isinstance(exc, aiohttp.ClientSSLError) else exc.os_error
        return TransportError(
            f"{where}: could not connect: {reason}",
            method=method,
            url=str(url),
            connect_failed=True,
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return ConfigurationError(f"invalid URL for {where}")
    # ServerDisconnectedError, ClientPayloadError, ClientOSError, ...: the request may have
    # reached the server.
    detail = str(exc) or type(exc).__name__
    return TransportError(f"{where}: {detail}", method=method, url=str(url))


#: ``json.dumps(body, separators=(",", ":"))`` without building an encoder per call.
_COMPACT_JSON: Final = jsonlib.JSONEncoder(separators=(",", ":"))


def _encode_json(body: Any) -> bytes:
    """The one serialization of a JSON body: compact, so the signed bytes are the sent bytes."""
    try:
        return _COMPACT_JSON.encode(body).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"the request body cannot be sent as JSON: {exc}") from None


def _user_agent() -> str:
    return f"chutes-jobs/{__version__}"


def _error_detail(status: int, text: str, headers: Mapping[str, str]) -> Any:
    """FastAPI's ``detail`` when the body has one, else the body text, whitespace collapsed."""
    if 300 <= status < 400:
        return f"redirect to {headers.get('location', '?')} (redirects are not followed)"
    try:
        parsed = jsonlib.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "detail" in parsed:
        return parsed["detail"]
    title = _HTML_TITLE.search(text)
    if title:  # a proxy's error page: its title says it all, the excerpt keeps the rest
        return f"{_collapse(title.group(1))} (HTML page)"
    return _collapse(text)[:200] or None


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _status_error(
    response: aiohttp.ClientResponse, method: str, url: yarl.URL
) -> APIStatusError:
    raw = await _read_capped(response, ERROR_BODY_LIMIT)
    return _answer_error(response.status, response.headers, raw, method, url)


def _answer_error(
    status: int, headers: Mapping[str, str], raw: bytes, method: str, url: yarl.URL
) -> APIStatusError:
    """The :class:`APIStatusError` subclass for an error answer (``raw``: its body).

    ``headers`` is read with lower-case names: aiohttp's headers ignore case, and the
    HTTP/1.1 pool's are lower-cased.
    """
    text = raw[:ERROR_BODY_LIMIT].decode("utf-8", "replace")
    return error_for_status(
        status,
        detail=_error_detail(status, text, headers),
        method=method,
        url=str(url),
        body_excerpt=text,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


def _log_answer(status: int, method: str, url: yarl.URL) -> None:
    if logger.isEnabledFor(logging.DEBUG):  # redacting costs: only when it is logged
        logger.debug("%s %s -> HTTP %d", method, redact_url(url), status)


def _json_answer(raw: bytes, status: int, content_type: str, method: str, url: yarl.URL) -> Any:
    """The decoded JSON of a 2xx answer's body ``raw``; :class:`ProtocolError` if it is not."""
    try:
        return jsonlib.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace")
        got = "an HTML page" if "html" in content_type else "invalid or truncated JSON"
        raise ProtocolError(
            f"{method} {redact_url(url)}: expected JSON, got {got}",
            status=status,
            body_excerpt=text,
            method=method,
            url=str(url),
        ) from None


class ChutesSession:
    """A connection to the Chutes Jobs API: credentials, timeouts, retries, one connection pool.

    Use it as an async context manager (or call :meth:`close`). User calls authenticate with
    ``api_key`` (``Authorization`` header) and/or ``hotkey`` (a 64-hex seed or a
    ``bittensor_wallet.Keypair``; signs create requests, extra ``hotkey``). Worker calls carry
    a job token and need no credentials.

    Args:
        base_url: API root; plain ``http://`` is refused for a non-loopback host while
            credentials are set unless ``allow_insecure_http`` is true.
        api_key: a ``cpk_...`` key, sent as given.
        hotkey: a hotkey seed (64 hex characters) or a keypair with ``ss58_address``/``sign``.
        user_id: kept for callers; never sent (the server ignores ``X-Chutes-UserID``).
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds of silence tolerated while reading an answer.
        request_timeout: total seconds for one JSON request attempt.
        retry_policy: when and how calls are retried (:class:`RetryPolicy` defaults).
        connection_limit: most simultaneous connections in the pool.
        user_agent: the ``User-Agent`` header (``chutes-jobs/<version>``).
        allow_insecure_http: permit credentials over plain http to a remote host.
        session: an ``aiohttp.ClientSession`` the caller owns; used as is, never closed.
    """

    def __init__(
        self,
        *,
        base_url: str | yarl.URL = DEFAULT_BASE_URL,
        api_key: str | None = None,
        hotkey: str | SigningKeypair | None = None,
        user_id: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        request_timeout: float = 120.0,
        retry_policy: RetryPolicy | None = None,
        connection_limit: int = 100,
        user_agent: str | None = None,
        allow_insecure_http: bool = False,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = yarl.URL(str(base_url).rstrip("/"))
        if not self.base_url.is_absolute() or self.base_url.scheme not in ("http", "https"):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {str(base_url)!r}")
        self.user_id = user_id
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.user_agent = user_agent or _user_agent()
        self.allow_insecure_http = allow_insecure_http
        self.connection_limit = connection_limit
        self.timeout = aiohttp.ClientTimeout(
            total=request_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        #: Timeout for streaming bodies: no total, so multi-GB transfers are not cut short.
        self.transfer_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._auth = UserAuth(
            api_key=ApiKeyAuth(api_key) if api_key else None,
            hotkey=HotkeyAuth(load_keypair(hotkey)) if hotkey is not None else None,
        )
        self._external_session = session
        self._urls: dict[str, yarl.URL] = {}
        self._urls_base = self.base_url
        self._owned_session: aiohttp.ClientSession | None = None
        self._http1: Http1Pool | None = None
        if self._auth.has_credentials:
            self._refuse_insecure(self.base_url, "credentials")

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """A session configured from the environment; keyword ``overrides`` win.

        Reads ``CHUTES_API_KEY``, ``CHUTES_BASE_URL``, ``CHUTES_HOTKEY_SEED`` and
        ``CHUTES_USER_ID`` (empty values are ignored).
        """
        settings: dict[str, Any] = {
            name: os.environ[var] for name, var in _ENV_SETTINGS.items() if os.environ.get(var)
        }
        settings.update(overrides)
        return cls(**settings)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.http  # noqa: B018 - open the pool inside the running loop
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pools this session created (a wrapped session is left open)."""
        if self._http1 is not None:
            await self._http1.close()
            self._http1 = None
        if self._owned_session is not None:
            await self._owned_session.close()
            self._owned_session = None

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

    def __repr__(self) -> str:
        return f"ChutesSession(base_url={str(self.base_url)!r}, auth={self.auth_kind!r})"

    # -- jobs ------------------------------------------------------------------------------

    async def create_job(
        self,
        chute_id: str,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        disk_gb: float | None = None,
    ) -> JobHandle:
        """Create (and so pay for) one job of ``chute_id``'s ``method``; return its handle.

        A create is never re-sent once it may have reached the server (see :class:`CallKind`).
        """
        from .job import create_job

        return await create_job(self, chute_id, method, args, disk_gb=disk_gb)

    def submit_many(
        self,
        chute_id: str,
        method: str,
        inputs: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        concurrency: int = 32,
        wait: bool = False,
        download_to: str | PathLike[str] | None = None,
        ledger: str | PathLike[str] | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
        disk_gb: float | None = None,
        poll: PollPolicy | None = None,
        poll_concurrency: int | None = None,
        download_concurrency: int = 4,
        wait_timeout: float | None = None,
        resubmit_unknown: bool = False,
        max_in_flight: int | None = None,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
        progress: ProgressCallback | None = None,
        on_job: Callable[[Job], None] | None = None,
    ) -> AsyncGenerator[BulkResult, None]:
        """Create one job per input; yield a :class:`~chutes_jobs.BulkResult` each, as they end.

        ``inputs`` (an iterable or async iterable of job-argument mappings) is read lazily:
        at most ``max_in_flight`` inputs are taken and not yet yielded (default: 4 per
        submitter, or 4096 when waiting). One input failing never stops the others.

        Args:
            concurrency: creates under way at once.
            wait: poll each job until it finishes (``BulkResult.job`` is the final Job).
            download_to: also download each job's outputs into ``download_to/<job_id>/``.
            ledger: a SQLite file recording every step per input key: a re-run skips what was
                submitted, resumes waiting and downloading, never creates a job twice.
            key: an input's ledger key (default: sha256 of its canonical JSON).
            disk_gb: the disk size of every job.
            poll, poll_concurrency, wait_timeout: polling policy, GETs at once (default
                ``concurrency``), seconds per job before giving up waiting.
            download_concurrency: jobs downloading at once.
            resubmit_unknown: create again the inputs whose earlier create's answer was lost
                (a job may exist for them; by default they are reported ``UNKNOWN``).
            cancel_grace: when the run is stopped, seconds creates under way get to finish
                before they are cancelled and recorded ``unknown``.
            progress: called with the :class:`~chutes_jobs.TransferProgress` of every output
                download, its ``filename`` being ``<job_id>/<filename>``.
            on_job: called with every job snapshot the run receives (each create's answer
                and each poll), e.g. for live counters.

        A 429 with Retry-After pauses every create of the run; a daily-quota 429 stops all
        further creates (the remaining inputs are reported ``NOT_SUBMITTED`` with
        :class:`~chutes_jobs.bulk.QuotaExceededError`). The generator stops the run when
        closed: wrap it in ``contextlib.aclosing`` to stop at once when leaving the loop early.
        """
        from .bulk import submit_many

        return submit_many(
            self, chute_id, method, inputs, concurrency=concurrency, wait=wait,
            download_to=download_to, ledger=ledger, key=key, disk_gb=disk_gb, poll=poll,
            poll_concurrency=poll_concurrency, download_concurrency=download_concurrency,
            wait_timeout=wait_timeout, resubmit_unknown=resubmit_unknown,
            max_in_flight=max_in_flight, cancel_grace=cancel_grace, progress=progress,
            on_job=on_job,
        )  # fmt: skip

    def job(self, job_id: str) -> JobHandle:
        """A handle on an existing job, for its user (nothing is sent yet)."""
        from .job import JobHandle

        return JobHandle(self, job_id)

    def job_from_status_url(self, status_url: str) -> JobHandle:
        """A worker's handle built from the job status URL ``{base}/jobs/{id}?token=...``.

        The URL's base must be this session's ``base_url``
        (``ChutesSession(base_url=...)``); a mismatch raises ``ConfigurationError``.
        """
        from .job import JobHandle
        from .worker import parse_status_url

        parsed = parse_status_url(status_url)
        if yarl.URL(parsed.base_url.rstrip("/")) != self.base_url:
            raise ConfigurationError(
                f"the status URL points to {redact_url(parsed.base_url)} but this session talks "
                f"to {self.base_url}: create the session with base_url={parsed.base_url!r}"
            )
        return JobHandle(self, parsed.job_id, token=parsed.token)

    # -- requests --------------------------------------------------------------------------

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
        fast_lane: bool = False,
    ) -> Any:
        """Send a JSON call with retries (by ``kind``) and return the decoded JSON answer.

        ``retry_policy`` replaces the session's policy for this call only. ``fast_lane`` sends
        it over the session's lean HTTP/1.1 pool (a third of aiohttp's CPU per call; what
        ``submit_many`` creates with) when the URL is on ``base_url`` and the session owns
        its connections; otherwise over aiohttp.

        Raises :class:`~chutes_jobs.ConfigurationError` before sending when the call cannot be
        authenticated, an :class:`~chutes_jobs.APIStatusError` subclass for an error status,
        :class:`~chutes_jobs.ProtocolError` when a 2xx answer is not JSON, and
        :class:`~chutes_jobs.TransportError` when the connection fails; ``.attempts`` tells
        how many attempts were made.
        """
        url = self.url(path)
        body = None if json is NO_BODY else _encode_json(json)
        self._check_sendable(method, url, auth=auth, token=token, body=body)
        target = url if token is None else url.update_query(token=token)
        extra = _JSON_BODY_HEADERS if body is not None else _JSON_HEADERS
        lane = self._http1_for(target) if fast_lane else None

        async def attempt(number: int) -> Any:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("attempt %d: %s %s", number, method, redact_url(url))
            headers = self._headers(method, auth=auth, body=body)
            headers.update(extra)
            if lane is not None:
                return await _send_json_http1(lane, method, target, url, headers, body)
            # send_once's steps, inline: this is the path every JSON call takes.
            try:
                async with self.http.request(
                    method,
                    target,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                ) as response:
                    _log_answer(response.status, method, target)
                    if not 200 <= response.status < 300:
                        raise await _status_error(response, method, target)
                    raw = await response.read()
                    return _json_answer(raw, response.status, response.content_type, method, url)
            except ChutesError:
                raise
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _transport_error(exc, method, target) from _safe_cause(exc)

        return await (retry_policy or self.retry_policy).run(kind, attempt)

    def _http1_for(self, url: yarl.URL) -> Http1Pool | None:
        """The lean HTTP/1.1 pool for ``url`` (None: use aiohttp).

        Created on first use; only for URLs on ``base_url``, and never when the caller's own
        aiohttp session was given (its settings are the caller's to keep).
        """
        if self._external_session is not None:
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
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Make one HTTP attempt and yield the 2xx response, its body unread, for streaming.

        ``auth`` adds user auth (API key header, or a hotkey signature over the exact body
        bytes); ``token`` adds ``?token=`` (never logged). An error status raises its
        :class:`~chutes_jobs.APIStatusError` subclass; aiohttp's failures, here or while the
        caller reads the body, raise :class:`~chutes_jobs.TransportError`. Redirects are not
        followed.
        """
        target = self.url(url)
        if json is not NO_BODY:
            data = _encode_json(json)
        self._check_sendable(method, target, auth=auth, token=token, body=data)
        if token is not None:
            target = target.update_query(token=token)
        request_headers = self._headers(method, auth=auth, body=data)
        if json is not NO_BODY:
            request_headers["Content-Type"] = JSON_CONTENT_TYPE
        request_headers.update(headers or {})
        with map_transport_errors(method, target):
            async with self.http.request(
                method,
                target,
                data=data,
                headers=request_headers,
                timeout=timeout or self.timeout,
                allow_redirects=False,
            ) as response:
                _log_answer(response.status, method, target)
                if not 200 <= response.status < 300:
                    raise await _status_error(response, method, target)
                yield response

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
) -> Any:
    """One attempt of a JSON call over the HTTP/1.1 pool: the decoded answer, or our error.

    ``target`` is ``url`` with its ``token=``, if any.
    """
    answer = await pool.send(method, target, headers, body)
    _log_answer(answer.status, method, target)
    if not 200 <= answer.status < 300:
        raise _answer_error(answer.status, answer.headers, answer.body, method, target)
    return _json_answer(answer.body, answer.status, answer.content_type, method, url)


def _signable_bytes(body: Any) -> bytes | None:
    """The body as bytes when it can be signed (bytes-like), else ``None``."""
    if type(body) is bytes:  # the JSON path: no copy
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return None
