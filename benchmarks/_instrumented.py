"""The instrumentation variants ``bench_bulk.py`` compares (imported by its client processes).

A client process switches between the variants of its package tree from run to run:
:func:`set_up_hooks` installs a variant's hooks in place of the previous one's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIB = 1024 * 1024

#: The OpenTelemetry hook of this process, made once (its SDK threads then run for every
#: variant alike).
_otel_hook: Any = None


def _no_op(event: object) -> None:
    return None


def set_up_hooks(variant: str) -> None:
    """Install the hooks of ``variant`` in this process, in place of those installed before."""
    if variant == "today":  # a tree from before hooks existed: nothing to set up
        return
    from chutes_jobs import instrumentation

    otel_hook = _opentelemetry_hook()
    instrumentation.clear_hooks()
    if variant == "default hooks (logging)":
        instrumentation.reset_hooks()
    elif variant == "no-op hook":
        instrumentation.add_hook(_no_op)
    elif variant == "OpenTelemetry SDK":
        instrumentation.add_hook(otel_hook)
    elif variant != "hooks off":
        raise ValueError(f"unknown variant {variant!r}")


def _opentelemetry_hook() -> Any:
    """The SDK with exporters that drop what they get: spans batched, metrics read every 10 s."""
    global _otel_hook
    if _otel_hook is not None:
        return _otel_hook
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from chutes_jobs import instrumentation

    class Spans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class Metrics(MetricExporter):
        def export(self, metrics_data: Any, **kwargs: Any) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
            pass

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Spans()))
    reader = PeriodicExportingMetricReader(Metrics(), export_interval_millis=10_000)
    _otel_hook = instrumentation.enable_opentelemetry(tracer_provider, MeterProvider([reader]))
    return _otel_hook


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[float]]:
    """Peak RSS growth over the block, in MiB, put in the list yielded (VmHWM reset first,
    Linux >= 4.0; 0 where /proc is missing)."""
    grown = [0.0]
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    before = _vm("VmRSS") if Path("/proc/self/status").exists() else 0
    yield grown
    if before:
        grown[0] = (_vm("VmHWM") - before) / MIB
