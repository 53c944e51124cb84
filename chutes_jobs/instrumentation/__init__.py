"""Instrumentation: hooks that receive typed events, and OpenTelemetry traces and metrics.

In the pattern of ``stamina.instrumentation``: a hook is a callable taking one event (the attrs
classes of :mod:`.events`: a request sent or answered, a retry scheduled, a job's state change,
a transfer's progress and end, an operation's start and end, a bulk run's counters). Events
never hold a secret. Hooks come from two places, called in this order:

* process-wide: :func:`add_hook`, :func:`remove_hook`, :func:`clear_hooks`,
  :func:`reset_hooks`, :func:`get_hooks`. The default is one :class:`LoggingHook`, which
  writes the library's log lines to the ``chutes_jobs`` logger;
* per session: ``ChutesSession(hooks=[...])``.

A hook that raises is logged once and never breaks a call. With no hook taking an event, the
event is not even built. :func:`enable_opentelemetry` installs an
:class:`~chutes_jobs.instrumentation.otel.OpenTelemetryHook` (extra ``otel``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
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
    TransferProgressed,
)
from .hooks import Hook, add_hook, clear_hooks, get_hooks, remove_hook, reset_hooks
from .logging_hook import LoggingHook

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .otel import OpenTelemetryHook

__all__ = [
    "BulkCounters",
    "Event",
    "Hook",
    "JobStateChanged",
    "LoggingHook",
    "OperationEnded",
    "OperationStarted",
    "RequestAnswered",
    "RequestSent",
    "RetryScheduled",
    "TransferEnded",
    "TransferProgressed",
    "add_hook",
    "clear_hooks",
    "disable_opentelemetry",
    "enable_opentelemetry",
    "get_hooks",
    "remove_hook",
    "reset_hooks",
]


def _otel_hook_class() -> type[OpenTelemetryHook]:
    try:
        from .otel import OpenTelemetryHook
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigurationError(
            "OpenTelemetry support needs opentelemetry-api: pip install 'chutes-jobs[otel]'"
        ) from exc
    return OpenTelemetryHook


def enable_opentelemetry(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> OpenTelemetryHook:
    """Make spans and metrics for every session of this process; return the hook installed.

    ``tracer_provider`` / ``meter_provider`` default to OpenTelemetry's global providers.
    Calling it again replaces the earlier hook (with the new providers). What is recorded:
    :mod:`chutes_jobs.instrumentation.otel`. :class:`ConfigurationError` when
    ``opentelemetry-api`` is not installed.
    """
    hook = _otel_hook_class()(tracer_provider=tracer_provider, meter_provider=meter_provider)
    disable_opentelemetry()
    add_hook(hook)
    return hook


def disable_opentelemetry() -> None:
    """Remove the hook(s) :func:`enable_opentelemetry` installed (nothing if there is none)."""
    otel = sys.modules.get(f"{__name__}.otel")
    if otel is None:  # never imported: no such hook was made
        return
    for hook in get_hooks():
        if isinstance(hook, otel.OpenTelemetryHook):
            remove_hook(hook)


def __getattr__(name: str) -> Any:
    if name == "OpenTelemetryHook":  # imported on use: opentelemetry is an optional extra
        return _otel_hook_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
