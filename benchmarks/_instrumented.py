"""The instrumentation variants ``bench_bulk.py`` compares, and its client processes.

A client process (:func:`worker_process`) serves runs (:func:`serve_runs`): for each line
``VARIANT N`` it installs the variant's hooks in place of the previous one's
(:func:`set_up_hooks`), makes ``N`` creates and answers one JSON line (:func:`run_in` sends
the line and reads the answer). The variant "today" runs an earlier tree's package, copied by
:func:`baseline_package` under the name :data:`BASELINE` so that it can be imported beside
this tree's (its modules import each other relatively; the bulk path imports no
``chutes_jobs`` module by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import proc_status, reset_peak_rss

MIB = 1024 * 1024
#: The name the ``--baseline`` tree's package is imported under.
BASELINE = "chutes_jobs_today"

#: The OpenTelemetry hook of this process, made on first use.
_otel_hook: Any = None


def _no_op(event: object) -> None:
    return None


def set_up_hooks(variant: str) -> None:
    """Install the hooks of ``variant`` in this process, in place of those installed before."""
    if variant == "today":  # a tree from before hooks existed: nothing to set up
        return
    from chutes_jobs import instrumentation

    instrumentation.clear_hooks()
    if variant == "default hooks (logging)":
        instrumentation.reset_hooks()
    elif variant == "no-op hook":
        instrumentation.add_hook(_no_op)
    elif variant == "OpenTelemetry SDK":
        instrumentation.add_hook(_opentelemetry_hook())
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


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[float]]:
    """Peak RSS growth over the block, in MiB, put in the list yielded (VmHWM reset first,
    Linux >= 4.0; 0 where /proc is missing)."""
    grown = [0.0]
    reset_peak_rss()
    before = proc_status("VmRSS") if Path("/proc/self/status").exists() else 0
    yield grown
    if before:
        grown[0] = (proc_status("VmHWM") - before) / MIB


def serve_runs(run: Callable[[int, str], tuple[float, float]]) -> None:
    """Serve the runs asked on stdin: ``run(n, package)`` gives (creates/s, CPU us per create)
    of ``n`` creates made with the package of that name.

    Each variant is warmed up on its first use; the answer holds the rate, the CPU per create
    and the run's peak RSS growth.
    """
    warm: set[str] = set()
    for line in sys.stdin:
        variant, n = line.rsplit(" ", 1)
        set_up_hooks(variant)
        package = BASELINE if variant == "today" else "chutes_jobs"
        if variant not in warm:
            run(min(int(n), 2000), package)
            warm.add(variant)
        with peak_rss_growth() as grown:
            rate, cpu = run(int(n), package)
        print(json.dumps({"rate": rate, "cpu": cpu, "rss_mib": grown[0]}), flush=True)


@contextlib.contextmanager
def baseline_package(tree: str | None) -> Iterator[str]:
    """The PYTHONPATH of the client processes: this tree's, and a folder holding ``tree``'s
    package as :data:`BASELINE` (when there is one)."""
    here = str(Path(__file__).resolve().parent.parent)
    if tree is None:
        yield here
        return
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as folder:
        shutil.copytree(Path(tree) / "chutes_jobs", Path(folder) / BASELINE)
        yield os.pathsep.join([here, folder])


@contextlib.contextmanager
def worker_process(script: str, path: str, base_url: str) -> Iterator[subprocess.Popen[str]]:
    """``script worker BASE_URL`` with ``path`` as its PYTHONPATH, stdin and stdout piped."""
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, script, "worker", base_url]
    with subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            yield proc
        finally:
            assert proc.stdin is not None
            proc.stdin.close()


def run_in(worker: subprocess.Popen[str], variant: str, n: int) -> dict[str, float]:
    """One run of ``n`` creates with ``variant``'s hooks in ``worker``: what it measured."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(f"{variant} {n}\n")
    worker.stdin.flush()
    result: dict[str, float] = json.loads(worker.stdout.readline())
    return result


def print_hooks(
    runs: dict[str, list[dict[str, float]]], n: int, rounds: int, load_before: Any
) -> None:
    """Print the table of ``runs`` (variant -> one figure dict per pass) and the verdict."""
    off = runs["hooks off"]

    def ratio(variant: str, key: str) -> float:
        return statistics.median(r[key] / o[key] for r, o in zip(runs[variant], off, strict=True))

    load = " / ".join(f"{x:.1f}" for x in load_before)
    after = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ninstrumentation: submit_many, {n} creates per run, medians of {rounds} passes")
    print(f"load average (1/5/15 min) before {load}, after {after}, on {os.cpu_count()} CPUs")
    header = f"{'variant':26} {'creates/s':>10} {'x hooks off':>12} {'CPU us/create':>14}"
    print(f"{header} {'x hooks off':>12} {'peak RSS+ MiB':>14}")
    for variant, measured in runs.items():
        rate = statistics.median(r["rate"] for r in measured)
        cpu = statistics.median(r["cpu"] for r in measured)
        rss = max(r["rss_mib"] for r in measured)
        print(
            f"{variant:26} {rate:10.0f} {ratio(variant, 'rate'):12.3f} {cpu:14.1f} "
            f"{ratio(variant, 'cpu'):12.3f} {rss:14.1f}"
        )
    noop = ratio("no-op hook", "rate")
    met = "met" if noop >= 0.95 else "MISSED"
    print(f"\nno-op hook / hooks off = {noop:.3f} creates/s (target >= 0.95: {met})")
    if "today" in runs:
        print(f"hooks off / today = {1 / ratio('today', 'rate'):.3f} creates/s (target: ~1.0)")
