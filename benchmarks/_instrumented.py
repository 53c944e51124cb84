"""The instrumentation variants ``bench_bulk.py`` compares (imported by its client subprocess)."""

from __future__ import annotations

from typing import Any


def set_up_hooks(variant: str) -> None:
    """Install the hooks of ``variant`` in this (fresh) process."""
    if variant in ("today", "default hooks (logging)"):
        return
    from chutes_jobs import instrumentation

    instrumentation.clear_hooks()
    if variant == "no-op hook":
        instrumentation.add_hook(lambda event: None)
    elif variant == "OpenTelemetry SDK":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            MetricExporter,
            MetricExportResult,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

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
        instrumentation.enable_opentelemetry(tracer_provider, MeterProvider([reader]))
