"""The aiohttp lane: one attempt over ``aiohttp``, its failures told in the library's terms.

:func:`map_transport_errors` is the one place aiohttp's exceptions become ours. The lane is
used for every streaming call (downloads, uploads) and for JSON calls outside a bulk run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import yarl

from .._redact import redact, redact_url
from ..errors import (
    APIStatusError,
    ChutesError,
    ConfigurationError,
    RequestTimeoutError,
    TransportError,
)
from .answers import ERROR_BODY_LIMIT, MAX_ANSWER_BYTES, answer_error, too_large

if TYPE_CHECKING:
    from ..instrumentation.scopes import RequestScope

__all__ = ["exchange", "map_transport_errors", "read_answer", "status_error"]


def _safe_cause(exc: BaseException) -> BaseException | None:
    """``exc`` as a ``__cause__`` unless its text holds a secret (a token-bearing URL)."""
    text = str(exc)
    return exc if redact(text) == text else None


@contextmanager
def map_transport_errors(method: str, url: yarl.URL | str) -> Iterator[None]:
    """Turn aiohttp's exceptions into :class:`TransportError` / :class:`RequestTimeoutError`.

    ``connect_failed`` is set when no connection was made, so the request provably never
    reached the server.
    """
    try:
        yield
    except ChutesError:  # already ours (RequestTimeoutError is a TimeoutError too)
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _transport_error(exc, method, url) from _safe_cause(exc)


@asynccontextmanager
async def exchange(
    http: aiohttp.ClientSession,
    method: str,
    target: yarl.URL,
    data: Any,
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout,
    probe: RequestScope | None = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """One request over aiohttp; yields the 2xx response, its body unread.

    An error status raises its :class:`~chutes_jobs.APIStatusError` subclass; aiohttp's
    failures, here or while the caller reads the body, raise our errors. Redirects are not
    followed. ``probe`` (an attempt observed by hooks) gets the answer's status.
    """
    with map_transport_errors(method, target):
        async with http.request(
            method, target, data=data, headers=headers, timeout=timeout, allow_redirects=False
        ) as response:
            if probe is not None:
                probe.status = response.status
            if not 200 <= response.status < 300:
                raise await status_error(response, method, target)
            yield response


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


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the (decoded) body, plus one to tell that there was more."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def status_error(
    response: aiohttp.ClientResponse, method: str, url: yarl.URL
) -> APIStatusError:
    """The error of a non-2xx answer (its first :data:`ERROR_BODY_LIMIT` bytes are read)."""
    raw = await _read_capped(response, ERROR_BODY_LIMIT - 1)
    return answer_error(response.status, response.headers, raw, method, url)


async def read_answer(response: aiohttp.ClientResponse, method: str, url: yarl.URL) -> bytes:
    """The whole body of a JSON answer, refused (:class:`AnswerTooLargeError`) over
    :data:`MAX_ANSWER_BYTES`, as the HTTP/1.1 lane does."""
    length = response.content_length
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    if length is not None and length > MAX_ANSWER_BYTES and not encoded:
        raise too_large(method, url, MAX_ANSWER_BYTES)
    raw = await _read_capped(response, MAX_ANSWER_BYTES)
    if len(raw) > MAX_ANSWER_BYTES:
        raise too_large(method, url, MAX_ANSWER_BYTES, decoded=encoded)
    return raw
