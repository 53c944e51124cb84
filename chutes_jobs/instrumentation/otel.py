"""OpenTelemetry traces and metrics, made from the instrumentation events (extra ``otel``).

Only ``opentelemetry-api`` is needed at run time: without an SDK (or with the API's default
no-op providers) every call below is a no-op.

Spans:

* one per HTTP attempt, kind CLIENT, named ``{method} {url.template}``, with the stable HTTP
  client semantic conventions: ``http.request.method``, ``url.template``, ``url.full`` (a
  ``token=`` value replaced by ``REDACTED``), ``server.address``, ``server.port``,
  ``http.request.resend_count`` (from the second attempt), ``http.response.status_code``,
  ``error.type`` (the status code from 400 on, else the exception's qualified class name; the
  span's status is then ERROR); plus ``chutes_jobs.call_kind``;
* one per operation, kind INTERNAL, named ``chutes_jobs.{operation}`` (``wait``,
  ``download``, ``download_outputs``, ``upload``, ``upload_outputs``, ``submit_many``), with
  ``chutes_jobs.job.id``, ``chutes_jobs.file``, ``chutes_jobs.outcome``, ``error.type``; a
  download's also ``chutes_jobs.transfer.bytes`` / ``.size`` / ``.resumed_from``, a
  ``submit_many``'s its counters ``chutes_jobs.bulk.<outcome>``. Operation spans are current
  while they run, so the attempt spans (and the caller's own spans) nest under them. The job's
  state changes seen while waiting are events (``chutes_jobs.job.state_changed``) of the
  ``wait`` span.

Metrics: ``http.client.request.duration`` (histogram, s, the semantic conventions' attributes
and buckets), ``chutes_jobs.retries`` (counter, by ``chutes_jobs.call_kind`` and
``error.type``), ``chutes_jobs.transfer.bytes`` (counter, By, by
``chutes_jobs.transfer.direction``), ``chutes_jobs.jobs`` (counter, jobs by
``chutes_jobs.outcome`` and ``chutes_jobs.operation``: each ``wait`` that ended, each result of
a ``submit_many`` run, counted from its ``BulkCounters``).

No attribute holds a secret: events carry none (see :mod:`.events`), and exceptions are not
recorded on spans (their class is, as ``error.type``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .events import (
    BulkCounters,
    Event,
    JobStateChanged,
    OperationEnded,
    OperationStarted,
    RequestAnswered,
    RequestSent,
    RetryScheduled,
    TransferEnded,
)

__all__ = ["OpenTelemetryHook"]

_SCOPE: Final = "chutes_jobs"
#: The semantic conventions' advice for ``http.client.request.duration`` (seconds).
_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
_BULK_COUNTS: Final = ("submitted", "finished", "failed", "downloaded", "not_submitted", "unknown")


def _library_version() -> str:
    try:
        return version("chutes-jobs")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def _error_type(status: int | None, error_type: str | None) -> str | None:
    """``error.type``: the status code of an error answer, else the exception's class."""
    if status is not None and status >= 400:
        return str(status)
    return error_type


class _Open:
    """A span this hook opened and made current, with what it learns before it ends."""

    __slots__ = ("counts", "event", "span")

    def __init__(self, span: trace.Span, event: RequestSent | OperationStarted) -> None:
        self.span = span
        self.event = event
        self.counts: BulkCounters | None = None


class OpenTelemetryHook:
    """An instrumentation hook that makes OpenTelemetry spans and metrics (see the module).

    ``tracer_provider`` / ``meter_provider``: the providers to use, the global ones when None.
    Install it with :func:`~chutes_jobs.instrumentation.enable_opentelemetry` (process-wide) or
    pass it in ``ChutesSession(hooks=[...])``.
    """

    event_types: Final = frozenset(
        {
            RequestSent,
            RequestAnswered,
            RetryScheduled,
            JobStateChanged,
            TransferEnded,
            OperationStarted,
            OperationEnded,
            BulkCounters,
        }
    )

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        release = _library_version()
        self._tracer = trace.get_tracer(_SCOPE, release, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, release, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self._retries = meter.create_counter(
            "chutes_jobs.retries", unit="{retry}", description="Retries scheduled, by call kind."
        )
        self._bytes = meter.create_counter(
            "chutes_jobs.transfer.bytes", unit="By", description="File bytes transferred."
        )
        self._jobs = meter.create_counter(
            "chutes_jobs.jobs", unit="{job}", description="Jobs waited for or run, by outcome."
        )
        #: The last counters of each ``submit_many`` run under way (jobs are counted by delta).
        self._runs: dict[int, BulkCounters] = {}
        self._open: ContextVar[_Open | None] = ContextVar(
            f"chutes_jobs_otel_{id(self)}", default=None
        )
        self._handlers: Mapping[type[Any], Callable[[Any], Any]] = {
            RequestSent: self._request_sent,
            RequestAnswered: self._request_answered,
            RetryScheduled: self._retry_scheduled,
            JobStateChanged: self._state_changed,
            TransferEnded: self._transfer_ended,
            OperationStarted: self._operation_started,
            OperationEnded: self._operation_ended,
            BulkCounters: self._bulk_counters,
        }

    def __repr__(self) -> str:
        return "OpenTelemetryHook()"

    def __call__(self, event: Event) -> contextlib.AbstractContextManager[None] | None:
        handler = self._handlers.get(type(event))
        return None if handler is None else handler(event)

    @contextlib.contextmanager
    def _current_span(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        event: RequestSent | OperationStarted,
    ) -> Iterator[None]:
        with self._tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,  # an exception's text is not an attribute we vouch for
            set_status_on_exception=False,
        ) as span:
            reset = self._open.set(_Open(span, event))
            try:
                yield
            finally:
                self._open.reset(reset)

    def _opened(self, event: RequestSent | OperationStarted) -> _Open | None:
        """The span this hook opened for ``event``, if it is the current one."""
        opened = self._open.get()
        return opened if opened is not None and opened.event is event else None

    # -- requests --------------------------------------------------------------------------

    @staticmethod
    def _server(event: RequestSent) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "http.request.method": event.method,
            "server.address": event.url.host or "",
            "server.port": event.url.port or 0,
        }
        if event.route is not None:
            attributes["url.template"] = event.route
        return attributes

    def _request_sent(self, event: RequestSent) -> contextlib.AbstractContextManager[None]:
        url = event.url.with_user(None)
        if "token" in url.query:
            url = url.update_query(token="REDACTED")
        attributes = self._server(event)
        attributes["url.full"] = str(url)
        attributes["chutes_jobs.call_kind"] = event.call_kind
        if event.attempt > 1:
            attributes["http.request.resend_count"] = event.attempt - 1
        name = event.method if event.route is None else f"{event.method} {event.route}"
        return self._current_span(name, SpanKind.CLIENT, attributes, event)

    def _request_answered(self, event: RequestAnswered) -> None:
        attributes = self._server(event.request)
        if event.status is not None:
            attributes["http.response.status_code"] = event.status
        error = _error_type(event.status, event.error_type)
        if error is not None:
            attributes["error.type"] = error
        self._duration.record(event.duration, attributes)
        opened = self._opened(event.request)
        if opened is not None:
            if event.status is not None:
                opened.span.set_attribute("http.response.status_code", event.status)
            if error is not None:
                opened.span.set_attribute("error.type", error)
                opened.span.set_status(Status(StatusCode.ERROR))

    def _retry_scheduled(self, event: RetryScheduled) -> None:
        error = _error_type(event.status, event.error_type) or event.error_type
        self._retries.add(1, {"chutes_jobs.call_kind": event.call_kind, "error.type": error})

    # -- jobs and transfers ----------------------------------------------------------------

    def _state_changed(self, event: JobStateChanged) -> None:
        opened = self._open.get()  # an event of the wait span of that job (not of a bulk run)
        if opened is None or not isinstance(opened.event, OperationStarted):
            return
        if opened.event.name != "wait" or opened.event.job_id != event.job_id:
            return
        attributes = {"chutes_jobs.job.to_state": event.to_state.value}
        if event.from_state is not None:
            attributes["chutes_jobs.job.from_state"] = event.from_state.value
        opened.span.add_event("chutes_jobs.job.state_changed", attributes)

    def _transfer_ended(self, event: TransferEnded) -> None:
        attributes = {"chutes_jobs.transfer.direction": event.direction}
        if event.error_type is not None:
            attributes["error.type"] = event.error_type
        if event.bytes:
            self._bytes.add(event.bytes, attributes)
        opened = self._open.get()
        if opened is None or not isinstance(opened.event, OperationStarted):
            return
        if opened.event.name == event.direction and opened.event.file == event.file:
            span = opened.span
            span.set_attribute("chutes_jobs.transfer.bytes", event.bytes)
            span.set_attribute("chutes_jobs.transfer.resumed_from", event.resumed_from)
            if event.size is not None:
                span.set_attribute("chutes_jobs.transfer.size", event.size)

    # -- operations ------------------------------------------------------------------------

    def _operation_started(
        self, event: OperationStarted
    ) -> contextlib.AbstractContextManager[None]:
        attributes: dict[str, Any] = {"chutes_jobs.operation": event.name}
        if event.job_id is not None:
            attributes["chutes_jobs.job.id"] = event.job_id
        if event.file is not None:
            attributes["chutes_jobs.file"] = event.file
        name = f"chutes_jobs.{event.name}"
        return self._current_span(name, SpanKind.INTERNAL, attributes, event)

    def _operation_ended(self, event: OperationEnded) -> None:
        if event.operation.name == "wait":
            self._jobs.add(
                1, {"chutes_jobs.outcome": event.outcome, "chutes_jobs.operation": "wait"}
            )
        opened = self._opened(event.operation)
        if opened is None:
            return
        span = opened.span
        span.set_attribute("chutes_jobs.outcome", event.outcome)
        if event.error_type is not None:
            span.set_attribute("error.type", event.error_type)
            span.set_status(Status(StatusCode.ERROR))
        if opened.counts is not None:
            for name in _BULK_COUNTS:
                span.set_attribute(f"chutes_jobs.bulk.{name}", getattr(opened.counts, name))
            span.set_attribute("chutes_jobs.bulk.inputs", opened.counts.taken)

    def _bulk_counters(self, event: BulkCounters) -> None:
        runs = self._runs
        last = runs.pop(event.run, None) if event.final else runs.get(event.run)
        for name in _BULK_COUNTS:
            added = getattr(event, name) - (0 if last is None else getattr(last, name))
            if added > 0:
                attributes = {"chutes_jobs.outcome": name, "chutes_jobs.operation": "submit_many"}
                self._jobs.add(added, attributes)
        if not event.final:
            runs[event.run] = event
        opened = self._open.get()
        if opened is not None and getattr(opened.event, "name", None) == "submit_many":
            opened.counts = event  # set on the run's span when it ends
