"""What the library's code calls to emit events: each helper builds nothing without a hook.

* :func:`request_observer`: a :class:`RequestScope` per HTTP call (None without a hook), whose
  ``attempt(n)`` is a context manager per attempt (``RequestSent`` in, ``RequestAnswered``
  out); the lane sets ``.status`` on it as soon as the answer's status line arrives;
* :func:`operation`: ``OperationStarted`` / ``OperationEnded`` around a user-level operation;
* :class:`TransferWatch`: an operation that also reports a file's progress and its end;
* :func:`notify_retry`, :func:`notify_state` for single events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from time import perf_counter
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias

import yarl

from .._redact import REDACTED
from ..errors import JobTimeoutError
from ..models import Job, JobState
from .events import (
    JobStateChanged,
    OperationEnded,
    OperationStarted,
    RequestAnswered,
    RequestSent,
    RetryScheduled,
    TransferEnded,
    TransferProgressed,
)
from .hooks import PROCESS_HOOKS, Hook, HookSet, close_scopes, emit, open_scopes

__all__ = [
    "OperationScope",
    "RequestScope",
    "TransferWatch",
    "error_type_of",
    "notify_retry",
    "notify_state",
    "operation",
    "request_observer",
]


def error_type_of(error: BaseException | None) -> str | None:
    """``error``'s qualified class name (``chutes_jobs.errors.RateLimitError``), None for None."""
    if error is None:
        return None
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _status_of(error: BaseException | None) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


# ----------------------------------------------------------------------------- requests


class RequestScope:
    """The events of one HTTP call: per attempt (``with scope.attempt(n):``, attempts never
    overlap), ``RequestSent`` on entry and ``RequestAnswered`` on exit.

    ``status`` is set by the lane once the answer's status line is in; after an exception
    without one, the exception's own ``status`` (an error status, a 2xx whose body was
    not JSON) is used.
    """

    __slots__ = (
        "_managers",
        "_sent",
        "_started",
        "answered_to",
        "call_kind",
        "method",
        "number",
        "route",
        "sent_to",
        "status",
        "url",
    )

    def __init__(
        self,
        sent_to: tuple[Hook, ...],
        answered_to: tuple[Hook, ...],
        method: str,
        url: yarl.URL,
        route: str | None,
        call_kind: str,
    ) -> None:
        self.sent_to, self.answered_to = sent_to, answered_to
        self.method, self.url, self.route, self.call_kind = method, url, route, call_kind
        self.number = 0
        self.status: int | None = None

    def attempt(self, number: int) -> RequestScope:
        """This call's attempt ``number``: enter it right before sending."""
        self.number, self.status = number, None
        return self

    def __enter__(self) -> RequestScope:
        self._sent = sent = RequestSent(
            self.method, self.route, self.url, self.number, self.call_kind
        )
        self._managers = open_scopes(self.sent_to, sent)
        self._started = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = perf_counter() - self._started
        if exc is None:
            answered = RequestAnswered(self._sent, self.status, duration, None)
        else:
            status = self.status if self.status is not None else _status_of(exc)
            answered = RequestAnswered(self._sent, status, duration, error_type_of(exc))
        close_scopes(self.answered_to, answered, self._managers)


#: Gives the route template of ``method target`` under ``base_url`` (``_http.routes``).
RouteOf: TypeAlias = Callable[[str, "str | yarl.URL", yarl.URL], "str | None"]


def request_observer(
    hooks: HookSet,
    method: str,
    url: yarl.URL,
    *,
    route_of: RouteOf,
    target: str | yarl.URL,
    base_url: yarl.URL,
    token: bool,
    kind: enum.Enum,
) -> RequestScope | None:
    """The scope of one call's attempts, or None when no hook takes request events.

    ``url`` is the URL without its token (``token`` says whether one is added when sending).
    The route is ``route_of(method, target, base_url)`` and the call kind ``kind.value`` (a
    :class:`~chutes_jobs.CallKind`), both worked out only when a hook is there.
    """
    sent_to, answered_to = hooks.of(RequestSent), hooks.of(RequestAnswered)
    if not sent_to and not answered_to:
        return None
    shown = url.update_query(token=REDACTED) if token else url
    route = route_of(method, target, base_url)
    # ``_value_``: the member's value as stored (``.value`` is a Python-level property).
    return RequestScope(sent_to, answered_to, method, shown, route, kind._value_)


# ----------------------------------------------------------------------------- operations


def _outcome_of(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, JobTimeoutError):
        return "timeout"
    return "error"


class OperationScope:
    """``OperationStarted`` on entry, ``OperationEnded`` on exit (nothing without a hook).

    Set :attr:`outcome` before leaving normally (default ``"ok"``); an exception makes it
    ``"cancelled"``, ``"timeout"`` (a :class:`~chutes_jobs.JobTimeoutError`) or ``"error"``
    unless an outcome was set before it was raised.
    """

    def __init__(
        self, hooks: HookSet, name: str, job_id: str | None = None, file: str | None = None
    ) -> None:
        self.outcome: str | None = None
        self._hooks = hooks
        self._identity = (name, job_id, file)
        self._started: OperationStarted | None = None
        self._managers: list[Any] | None = None
        self._started_at = 0.0

    def __enter__(self) -> Self:
        hooks = self._hooks
        started_to, ended_to = hooks.of(OperationStarted), hooks.of(OperationEnded)
        if started_to or ended_to:
            self._started = OperationStarted(*self._identity)
            self._managers = open_scopes(started_to, self._started)
            self._started_at = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started is None:
            return
        outcome = self.outcome or ("ok" if exc is None else _outcome_of(exc))
        duration = perf_counter() - self._started_at
        ended = OperationEnded(self._started, outcome, duration, error_type_of(exc))
        close_scopes(self._hooks.of(OperationEnded), ended, self._managers)


def operation(
    hooks: HookSet, name: str, job_id: str | None = None, file: str | None = None
) -> OperationScope:
    """The scope of operation ``name``: enter it with ``with``."""
    return OperationScope(hooks, name, job_id, file)


# ----------------------------------------------------------------------------- transfers


class _Progress(Protocol):
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int | None: ...


class TransferWatch(OperationScope):
    """One file transfer (``async with``): the ``download`` or ``upload`` operation, its
    ``TransferProgressed`` events through :meth:`progress`, and ``TransferEnded`` on exit
    (before ``OperationEnded``).

    ``measure`` (a download's ``.part`` size) is awaited on entry and after a failure, only
    when a hook takes ``TransferEnded``. The transferring code calls :meth:`attempt_done` after
    each attempt that succeeded.
    """

    def __init__(
        self,
        hooks: HookSet,
        direction: str,
        job_id: str | None,
        file: str,
        path: object,
        *,
        measure: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        super().__init__(hooks, direction, job_id, file)
        self._path = path
        self._measure = measure
        self._ended_to = hooks.of(TransferEnded)
        self._progress_to = hooks.of(TransferProgressed)
        self._start_size = self.resumed_from = 0
        self._size: int | None = None
        self._began = 0.0

    async def __aenter__(self) -> Self:
        self.__enter__()
        self._began = perf_counter()
        if self._ended_to and self._measure is not None:
            try:
                self._start_size = await self._measure()
            except BaseException as exc:  # the operation began: it ends here
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._ended_to:
                await self._emit_end(exc)
        finally:
            self.__exit__(exc_type, exc, tb)

    def attempt_done(self, offset: int, size: int) -> None:
        """An attempt wrote the file from byte ``offset`` up to ``size`` bytes, and succeeded."""
        self.resumed_from, self._size = offset, size

    async def _emit_end(self, error: BaseException | None) -> None:
        size = self._size if error is None else None
        reached = size
        # After a failure, what the file holds now; not once cancelled (no more waiting then).
        if error is not None and not isinstance(error, asyncio.CancelledError) and self._measure:
            with contextlib.suppress(Exception):
                reached = await self._measure()
        moved = 0 if reached is None else max(0, reached - self._start_size)
        direction, job_id, file = self._identity
        ended = TransferEnded(
            direction,
            job_id,
            file or "",
            str(self._path),
            moved,
            size,
            perf_counter() - self._began,
            self.resumed_from,
            error_type_of(error),
        )
        emit(self._ended_to, ended)

    def progress(self, callback: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
        """``callback`` (a :data:`~chutes_jobs.ProgressCallback`), also reporting to the hooks
        that take ``TransferProgressed``; returned unchanged when none does."""
        takers = self._progress_to
        if not takers:
            return callback
        direction, job_id, file = self._identity

        def report(progress: _Progress) -> None:
            event = TransferProgressed(direction, job_id, file or "", progress.done, progress.total)
            emit(takers, event)
            if callback is not None:
                callback(progress)

        return report


# ----------------------------------------------------------------------------- single events


def notify_retry(
    hooks: HookSet | None,
    call_kind: str,
    attempt: int,
    max_attempts: int,
    error: BaseException,
    delay: float,
) -> None:
    """A retry of a ``call_kind`` call was scheduled (``hooks`` None: the process-wide ones)."""
    takers = (hooks if hooks is not None else PROCESS_HOOKS).of(RetryScheduled)
    if takers:
        event = RetryScheduled(
            call_kind,
            attempt,
            max_attempts,
            delay,
            str(error),
            error_type_of(error) or "",
            _status_of(error),
        )
        emit(takers, event)


def notify_state(hooks: HookSet, job_id: str, from_state: JobState | None, job: Job) -> None:
    """A job handle saw ``job_id`` go from ``from_state`` to ``job.state`` (``job``: the new
    snapshot, its state read only when a hook takes the event)."""
    takers = hooks.of(JobStateChanged)
    if takers:
        emit(takers, JobStateChanged(job_id, from_state, job.state))
