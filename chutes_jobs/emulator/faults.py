"""The fault plan: programmable, deterministic misbehaviour per route, for tests and benchmarks.

Each fault is consumed by the requests of its route in the order faults were added: the first
fault of a route that still has shots left applies to the next request of that route.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .responses import bare_500, detail_response

__all__ = ["FAULT_KEY", "ROUTE_NAMES", "Fault", "FaultPlan", "close_connection"]

#: The routes a fault can target.
ROUTE_NAMES = ("create", "get", "delete", "finish", "upload", "complete", "download")

_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_DEFAULT_DETAILS = {429: "Too many requests", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Fault:
    """One planned misbehaviour of a route (see :meth:`FaultPlan.add`)."""

    route: str
    latency: float = 0.0
    status: int | None = None
    retry_after: float | str | None = None
    html: bool = False
    cut_after: int | None = None
    short_body: int | None = None
    clip_to: int | None = None
    drop_after_handling: bool = False
    hang: bool = False
    times: int | None = 1
    after: int = 0
    probability: float = 1.0
    #: How many requests this fault has been applied to so far.
    fired: int = 0
    _seen: int = 0

    @property
    def exhausted(self) -> bool:
        """True once the fault has used all its shots."""
        return self.times is not None and self.fired >= self.times

    def status_response(self) -> web.Response:
        """The error answer of a ``status=`` fault."""
        assert self.status is not None
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.html:
            return web.Response(
                status=self.status, text=_BAD_GATEWAY_HTML, content_type="text/html",
                headers=headers,
            )  # fmt: skip
        if self.status == 500:
            return bare_500()
        detail = _DEFAULT_DETAILS.get(self.status, f"Injected fault {self.status}")
        return detail_response(self.status, detail, headers)


class FaultPlan:
    """Faults per route, consumed in order; seeded so probabilistic faults are reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._random = random.Random(seed)
        self._release = asyncio.Event()
        self._closing = False
        #: Requests currently held by a ``hang`` fault.
        self.hanging = 0

    def seed(self, seed: int) -> None:
        """Restart the random sequence used by faults with ``probability < 1``."""
        self._random = random.Random(seed)

    def add(
        self,
        route: str,
        *,
        latency: float = 0.0,
        status: int | None = None,
        retry_after: float | str | None = None,
        html: bool = False,
        cut_after: int | None = None,
        short_body: int | None = None,
        clip_to: int | None = None,
        drop_after_handling: bool = False,
        hang: bool = False,
        times: int | None = 1,
        after: int = 0,
        probability: float = 1.0,
    ) -> Fault:
        """Plan a fault for the next ``times`` requests of ``route`` (``None``: every request).

        - ``latency``: seconds to wait before handling (combines with any other kind);
        - ``status``: answer this status without running the route (500 is the bare
          ``Internal Server Error``; 429/502/503 a ``{"detail"}``; ``retry_after`` adds the
          header; ``html=True`` answers an nginx-style HTML page instead);
        - ``cut_after``: close the connection after K bytes of the response body (download),
          or, for a route with a request body, after reading K bytes of it (nothing stored);
        - ``short_body``: send the full Content-Length, then a body N bytes shorter, and close;
        - ``clip_to`` (JSON routes): run the route (a create is billed), then answer its status
          with only the first N bytes of its body and a Content-Length of N: a whole-looking
          answer whose JSON is cut short (``0``: an empty body), as a broken proxy sends;
        - ``drop_after_handling``: run the route (state changes, a create is billed), then
          close the connection without answering;
        - ``hang``: hold the request until :meth:`release` (then it runs normally) or teardown;
        - ``after``: let the first N matching requests through untouched;
        - ``probability``: apply to each request with this chance, from the seeded generator.
        """
        if route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; expected one of {ROUTE_NAMES}")
        fault = Fault(
            route, latency, status, retry_after, html, cut_after, short_body, clip_to,
            drop_after_handling, hang, times, after, probability,
        )  # fmt: skip
        self._faults.append(fault)
        return fault

    def clear(self, route: str | None = None) -> None:
        """Forget the planned faults (of one route, or all) and release hung requests."""
        self._faults = [f for f in self._faults if route is not None and f.route != route]
        self.release()

    def release(self) -> None:
        """Let every request held by a ``hang`` fault proceed."""
        self._release.set()
        self._release = asyncio.Event()

    def pending(self, route: str | None = None) -> list[Fault]:
        """The faults that still have shots left."""
        return [f for f in self._faults if not f.exhausted and route in (None, f.route)]

    def take(self, route: str) -> Fault | None:
        """The fault to apply to this request of ``route``, if any (consumes one shot)."""
        for fault in self._faults:
            if fault.route != route or fault.exhausted:
                continue
            fault._seen += 1
            if fault._seen <= fault.after:
                return None
            if fault.probability < 1.0 and self._random.random() >= fault.probability:
                return None
            fault.fired += 1
            return fault
        return None

    async def hold(self) -> bool:
        """Wait for :meth:`release`; False when the emulator is closing instead."""
        self.hanging += 1
        try:
            if not self._closing:
                await self._release.wait()
        finally:
            self.hanging -= 1
        return not self._closing

    def shutdown(self) -> None:
        """Teardown: hung requests stop waiting and are closed unanswered."""
        self._closing = True
        self._release.set()


#: Where a route finds the fault applied to its request (download applies body faults itself).
if TYPE_CHECKING or hasattr(web, "RequestKey"):
    FAULT_KEY = web.RequestKey("fault", Fault)
else:  # aiohttp < 3.14 has no typed request keys: a request's storage takes plain strings
    FAULT_KEY = "chutes_jobs.emulator.fault"


def close_connection(request: web.Request) -> None:
    """Drop the client's connection right now, whatever was or was not sent."""
    if request.transport is not None:
        request.transport.close()
