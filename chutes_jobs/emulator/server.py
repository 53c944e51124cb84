"""The HTTP front: Starlette-like routing (404/405/307), fault injection, request log."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .faults import FAULT_KEY, Fault, FaultPlan, close_connection
from .responses import HTTPError, bare_500, detail_response
from .routes import Routes

__all__ = ["RequestRecord", "Server"]

log = logging.getLogger("chutes_jobs.emulator")

#: Request headers kept in the request log (never credentials).
LOGGED_HEADERS = (
    "Range", "If-Range", "Accept-Encoding", "Content-Type", "Content-Length", "User-Agent",
)  # fmt: skip

#: Routes in the live router's order: the first full match wins, as in Starlette.
_ROUTE_TABLE = (
    ("create", "POST", "/jobs/{chute_id}/{method}"),
    ("delete", "DELETE", "/jobs/{job_id}"),
    ("finish", "POST", "/jobs/{job_id}"),
    ("upload", "PUT", "/jobs/{job_id}/upload"),
    ("complete", "PUT", "/jobs/{job_id}"),
    ("get", "GET", "/jobs/{job_id}"),
    ("download", "GET", "/jobs/{job_id}/download/{file_id}"),
)
_ROUTES_WITH_BODY = frozenset({"create", "finish", "upload", "complete"})

Handler = Callable[..., Awaitable[web.StreamResponse]]


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


_PATTERNS = [(name, method, _compile(template)) for name, method, template in _ROUTE_TABLE]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator saw it (path without the query, which may hold a token)."""

    route: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


class Server:
    """Dispatches requests to :class:`Routes`, applying the fault plan and counting calls."""

    def __init__(self, routes: Routes, faults: FaultPlan) -> None:
        self.routes = routes
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []

    def app(self) -> web.Application:
        """The aiohttp application serving every path through :meth:`dispatch`."""
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Route one request, as FastAPI/Starlette would, with its planned fault if any.

        A client hanging up mid-request (a dropped download or upload) is normal: one DEBUG
        line, no traceback.
        """
        try:
            return await self._dispatch(request)
        except ConnectionError as exc:
            log.debug("client hung up during %s %s: %r", request.method, request.path, exc)
            close_connection(request)
            return web.Response()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        found = _match(request.method, request.path)
        if not isinstance(found, tuple):
            return _unrouted(request, found)
        name, params = found
        self.counts[name] += 1
        headers = {h: request.headers[h] for h in LOGGED_HEADERS if h in request.headers}
        self.requests.append(RequestRecord(name, request.method, request.path, headers))
        handler: Handler = getattr(self.routes, name)
        fault = self.faults.take(name)
        if fault is None:
            return await _run(handler, request, params)
        return await self._with_fault(fault, name, handler, request, params)

    async def _with_fault(
        self, fault: Fault, name: str, handler: Handler, request: web.Request, params: Any
    ) -> web.StreamResponse:
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.hang and not await self.faults.hold():
            close_connection(request)
            return web.Response()
        if fault.status is not None:
            return fault.status_response()
        if fault.cut_after is not None and name in _ROUTES_WITH_BODY:
            await _read_then_cut(request, fault.cut_after)
            return web.Response()
        request[FAULT_KEY] = fault
        response = await _run(handler, request, params)
        if response.prepared:  # streamed by the route itself, which applied the fault
            return response
        if fault.drop_after_handling:
            close_connection(request)
            return response
        if isinstance(response, web.Response) and (fault.short_body or fault.cut_after):
            return await _send_truncated(request, response, fault)
        if isinstance(response, web.Response) and fault.clip_to is not None:
            return _clipped(response, fault.clip_to)
        return response


def _match(method: str, path: str) -> tuple[str, dict[str, str]] | str | None:
    """(route, params) for a full match; the allowed methods (``str``) if only the path matched."""
    allowed: list[str] = []
    for name, route_method, pattern in _PATTERNS:
        m = pattern.match(path)
        if m is None:
            continue
        if route_method == method:
            return name, m.groupdict()
        allowed.append(route_method)
    return ", ".join(dict.fromkeys(allowed)) if allowed else None


def _unrouted(request: web.Request, allowed: str | None) -> web.StreamResponse:
    """405 when the path exists for other methods, Starlette's trailing-slash 307, or 404."""
    if allowed is not None:
        return detail_response(405, "Method Not Allowed", {"Allow": allowed})
    path = request.path
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    if path != "/" and _match(request.method, other) is not None:
        location = request.url.with_path(other).with_query(request.query_string)
        return web.Response(status=307, headers={"Location": str(location)})
    return detail_response(404, "Not Found")


async def _run(handler: Handler, request: web.Request, params: Any) -> web.StreamResponse:
    try:
        return await handler(request, **params)
    except HTTPError as exc:
        return exc.response()
    except (ConnectionError, asyncio.CancelledError):
        raise  # a client hanging up (see dispatch), or the server stopping
    except Exception:
        log.exception("emulator route %s %s crashed", request.method, request.path)
        return bare_500()


async def _read_then_cut(request: web.Request, limit: int) -> None:
    """Read ``limit`` bytes of the request body, then drop the connection."""
    received = 0
    while received < limit:
        chunk = await request.content.read(min(1 << 16, limit - received))
        if not chunk:
            break
        received += len(chunk)
    close_connection(request)


def _clipped(response: web.Response, keep: int) -> web.Response:
    """The same answer with only its first ``keep`` bytes, announced as its whole length."""
    body = response.body if isinstance(response.body, bytes) else b""
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(status=response.status, body=body[:keep], headers=headers)


async def _send_truncated(
    request: web.Request, response: web.Response, fault: Fault
) -> web.StreamResponse:
    """Announce the full Content-Length, send fewer bytes, close."""
    body = response.body if isinstance(response.body, bytes) else b""
    keep = len(body)
    if fault.cut_after is not None:
        keep = min(keep, fault.cut_after)
    if fault.short_body is not None:
        keep = max(0, keep - fault.short_body)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    truncated = web.StreamResponse(status=response.status, headers=headers)
    truncated.content_length = len(body)
    await truncated.prepare(request)
    await truncated.write(body[:keep])
    close_connection(request)
    return truncated
