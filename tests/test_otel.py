"""OpenTelemetry spans and metrics, read back from the SDK's in-memory exporters.

End to end on the emulator over loopback HTTP: a create → wait → download, a retried 429 (on
create and on a read), a resumed download, a bulk run, and a sweep showing that no API key,
worker token or ``cak_`` token is in any span, span event or metric attribute.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yarl
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from chutes_jobs import AuthenticationError, ChutesSession, ConfigurationError, RetryPolicy
from chutes_jobs import instrumentation as ins
from chutes_jobs.emulator import Emulator
from chutes_jobs.instrumentation.otel import OpenTelemetryHook
from chutes_jobs.polling import PollPolicy

FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)
CAK = "cak_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


class Telemetry:
    """An SDK tracer and meter provider whose spans and metrics stay in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.hook = OpenTelemetryHook(self.tracer_provider, self.meter_provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, data point)`` of every point of ``metric``."""
        found = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found += [(dict(p.attributes or {}), p) for p in m.data.data_points]
        return found

    def total(self, metric: str, **attributes: Any) -> float:
        """The sum of ``metric``'s points whose attributes include ``attributes``."""
        return sum(
            getattr(p, "value", None) or getattr(p, "count", 0)
            for attrs_, p in self.points(metric)
            if all(attrs_.get(k.replace("__", ".")) == v for k, v in attributes.items())
        )


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


@pytest.fixture(autouse=True)
def no_process_hooks() -> Iterator[None]:
    before = ins.get_hooks()
    ins.clear_hooks()
    yield
    ins.clear_hooks()
    for hook in before:
        ins.add_hook(hook)


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})
        yield emulator


@pytest_asyncio.fixture
async def session(emu: Emulator, telemetry: Telemetry) -> AsyncIterator[ChutesSession]:
    async with ChutesSession(
        base_url=emu.base_url,
        api_key=emu.api_key,
        retry_policy=FAST_RETRY,
        hooks=[telemetry.hook],
    ) as s:
        yield s


# ----------------------------------------------------------------------------- one job


async def test_create_wait_download_spans_and_metrics(
    emu: Emulator, session: ChutesSession, telemetry: Telemetry, tmp_path: Path
) -> None:
    job = await session.create_job("demo", "files", {"sizes": [4096, 100_000]})
    await job.wait(timeout=30, poll=FAST_POLL)
    await job.download_outputs(tmp_path)
    port = yarl.URL(emu.base_url).port

    (create,) = telemetry.spans("POST /jobs/{chute_id}/{method}")
    assert create.kind is SpanKind.CLIENT and create.status.status_code is StatusCode.UNSET
    assert dict(create.attributes or {}) == {
        "http.request.method": "POST",
        "url.template": "/jobs/{chute_id}/{method}",
        "url.full": f"{emu.base_url}/jobs/demo/files",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "chutes_jobs.call_kind": "create",
    }

    (wait,) = telemetry.spans("chutes_jobs.wait")
    assert wait.kind is SpanKind.INTERNAL
    assert wait.attributes == {
        "chutes_jobs.operation": "wait",
        "chutes_jobs.job.id": job.id,
        "chutes_jobs.outcome": "finished",
    }
    polls = telemetry.spans("GET /jobs/{job_id}")
    assert polls and all(parent_of(p) == wait.context.span_id for p in polls)
    changes = [dict(e.attributes or {}) for e in wait.events]
    assert changes[-1]["chutes_jobs.job.to_state"] == "finished"

    (outputs,) = telemetry.spans("chutes_jobs.download_outputs")
    downloads = telemetry.spans("chutes_jobs.download")
    assert {parent_of(d) for d in downloads} == {outputs.context.span_id}
    by_file = {d.attributes["chutes_jobs.file"]: d for d in downloads}  # type: ignore[index]
    assert by_file["sub/file_001.bin"].attributes["chutes_jobs.transfer.bytes"] == 100_000  # type: ignore[index]
    gets = telemetry.spans("GET /jobs/{job_id}/download/{file_id}")
    assert {parent_of(g) for g in gets} == {d.context.span_id for d in downloads}

    assert telemetry.total("http.client.request.duration") == 1 + len(polls) + 2
    assert (
        telemetry.total(
            "http.client.request.duration", url__template="/jobs/{job_id}/download/{file_id}"
        )
        == 2
    )
    assert (
        telemetry.total("chutes_jobs.transfer.bytes", chutes_jobs__transfer__direction="download")
        == 104_096
    )
    assert telemetry.total("chutes_jobs.jobs", chutes_jobs__outcome="finished") == 1
    assert telemetry.points("chutes_jobs.retries") == []
    (histogram,) = telemetry.points("http.client.request.duration")[:1]
    assert histogram[1].explicit_bounds[:3] == (0.005, 0.01, 0.025)


async def test_the_callers_span_is_the_parent(session: ChutesSession, telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("the-service")
    with tracer.start_as_current_span("handle request") as mine:
        job = await session.create_job("demo", "echo", {})
        await job.wait(timeout=30, poll=FAST_POLL)
    (create,) = telemetry.spans("POST /jobs/{chute_id}/{method}")
    (wait,) = telemetry.spans("chutes_jobs.wait")
    assert parent_of(create) == parent_of(wait) == mine.get_span_context().span_id


# ----------------------------------------------------------------------------- retries


async def test_a_retried_429_on_create(
    emu: Emulator, session: ChutesSession, telemetry: Telemetry
) -> None:
    emu.faults.add("create", status=429, retry_after=0.01, times=1)
    await session.create_job("demo", "echo", {})
    refused, created = telemetry.spans("POST /jobs/{chute_id}/{method}")
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.attributes["http.response.status_code"] == 429  # type: ignore[index]
    assert refused.attributes["error.type"] == "429"  # type: ignore[index]
    assert "http.request.resend_count" not in (refused.attributes or {})
    assert created.attributes["http.request.resend_count"] == 1  # type: ignore[index]
    assert created.status.status_code is StatusCode.UNSET
    assert (
        telemetry.total("chutes_jobs.retries", chutes_jobs__call_kind="create", error__type="429")
        == 1
    )
    assert telemetry.total("http.client.request.duration", http__response__status_code=429) == 1


async def test_a_retried_429_on_a_read(
    emu: Emulator, session: ChutesSession, telemetry: Telemetry
) -> None:
    job = await session.create_job("ext", "run", {})
    emu.faults.add("get", status=429, retry_after=0.01, times=2)
    await job.refresh()
    statuses = [
        s.attributes["http.response.status_code"] for s in telemetry.spans("GET /jobs/{job_id}")
    ]  # type: ignore[index]
    assert statuses == [429, 429, 200]
    assert telemetry.total("chutes_jobs.retries", chutes_jobs__call_kind="read") == 2


async def test_a_resumed_download(
    emu: Emulator, session: ChutesSession, telemetry: Telemetry, tmp_path: Path
) -> None:
    job = await session.create_job("demo", "files", {"sizes": [400_000]})
    await job.wait(timeout=30, poll=FAST_POLL)
    emu.faults.add("download", cut_after=150_000)
    await job.download("file_000.bin", tmp_path / "f.bin")
    (download,) = telemetry.spans("chutes_jobs.download")
    cut, resumed = telemetry.spans("GET /jobs/{job_id}/download/{file_id}")
    assert {parent_of(cut), parent_of(resumed)} == {download.context.span_id}
    assert cut.attributes["error.type"] == "chutes_jobs.errors.IncompleteTransferError"  # type: ignore[index]
    assert cut.status.status_code is StatusCode.ERROR
    assert resumed.attributes["http.response.status_code"] == 206  # type: ignore[index]
    assert resumed.attributes["http.request.resend_count"] == 1  # type: ignore[index]
    attributes = download.attributes or {}
    assert attributes["chutes_jobs.transfer.resumed_from"] >= 150_000  # type: ignore[operator]
    assert (attributes["chutes_jobs.transfer.bytes"], attributes["chutes_jobs.outcome"]) == (
        400_000,
        "ok",
    )
    assert telemetry.total("chutes_jobs.transfer.bytes") == 400_000
    assert telemetry.total("chutes_jobs.retries", chutes_jobs__call_kind="transfer") == 1


# ----------------------------------------------------------------------------- operations


async def test_a_wait_that_times_out_is_an_error_span(
    session: ChutesSession, telemetry: Telemetry
) -> None:
    job = await session.create_job("ext", "run", {})
    with pytest.raises(Exception, match="did not finish"):
        await job.wait(timeout=0.05, poll=FAST_POLL)
    (wait,) = telemetry.spans("chutes_jobs.wait")
    assert wait.status.status_code is StatusCode.ERROR
    assert wait.attributes["chutes_jobs.outcome"] == "timeout"  # type: ignore[index]
    assert wait.attributes["error.type"] == "chutes_jobs.errors.JobTimeoutError"  # type: ignore[index]
    assert telemetry.total("chutes_jobs.jobs", chutes_jobs__outcome="timeout") == 1


async def test_submit_many_is_the_parent_of_its_calls_and_counts_jobs(
    emu: Emulator, session: ChutesSession, telemetry: Telemetry, http1_sends: list[str]
) -> None:
    emu.faults.add("create", status=429, retry_after=0.01, times=1)  # the run pauses, resends
    inputs: list[Any] = [{"i": i} for i in range(8)] + ["not a mapping"]
    results = [r async for r in session.submit_many("demo", "echo", inputs, wait=True)]
    assert sum(r.ok for r in results) == 8
    assert "POST" in http1_sends  # the run's calls took the HTTP/1.1 lane
    (run,) = telemetry.spans("chutes_jobs.submit_many")
    run_id = run.context.span_id
    assert not run.events  # job state changes are events of wait spans only
    creates = telemetry.spans("POST /jobs/{chute_id}/{method}")
    statuses = sorted(c.attributes["http.response.status_code"] for c in creates)  # type: ignore[index]
    assert statuses == [200] * 8 + [429]
    assert {parent_of(c) for c in creates} == {run_id}
    assert {parent_of(g) for g in telemetry.spans("GET /jobs/{job_id}")} == {run_id}
    attributes = run.attributes or {}
    assert (
        attributes["chutes_jobs.bulk.finished"],
        attributes["chutes_jobs.bulk.not_submitted"],
    ) == (8, 1)
    assert attributes["chutes_jobs.outcome"] == "ok"
    assert telemetry.total("chutes_jobs.jobs", chutes_jobs__operation="submit_many") == 9
    assert telemetry.total("chutes_jobs.jobs", chutes_jobs__outcome="finished") == 8


# ----------------------------------------------------------------------------- no secret


def every_text(telemetry: Telemetry) -> list[str]:
    """Every span name, attribute and event, and every metric attribute, as text."""
    texts: list[str] = []
    for span in telemetry.spans():
        texts.append(span.name)
        texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            texts.append(event.name)
            texts += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
        texts.append(str(span.status.description))
    for metric in (
        "http.client.request.duration",
        "chutes_jobs.retries",
        "chutes_jobs.transfer.bytes",
        "chutes_jobs.jobs",
    ):
        texts += [f"{k}={v}" for attrs_, _ in telemetry.points(metric) for k, v in attrs_.items()]
    return texts


async def test_no_secret_in_any_span_or_metric(
    emu: Emulator, telemetry: Telemetry, tmp_path: Path
) -> None:
    """User calls (API key), a worker's calls (job token, retried), a cak_ token refused."""
    emu.faults.add("finish", status=502, times=1)
    emu.faults.add("upload", status=503, times=1)
    out = tmp_path / "out"
    await asyncio.to_thread(out.mkdir)
    await asyncio.to_thread((out / "r.bin").write_bytes, b"x" * 5000)
    events: list[Any] = []
    hooks = [telemetry.hook, events.append]
    async with ChutesSession(
        base_url=emu.base_url, api_key=emu.api_key, retry_policy=FAST_RETRY, hooks=hooks
    ) as user:
        job = await user.create_job("ext", "run", {"secret-looking": "cpk_not_a_key"})
        status_url = emu.job_status_url(job.id)
        async with ChutesSession(
            base_url=emu.base_url, retry_policy=FAST_RETRY, hooks=hooks
        ) as worker:
            handle = worker.job_from_status_url(status_url)
            targets = await handle.finish(result={"ok": True}, outputs=out)
            upload_urls = list(targets.urls.values())
            assert (await handle.upload_outputs(targets)).ok
            await handle.complete()
        await job.wait(timeout=30, poll=FAST_POLL)
        await job.download_outputs(tmp_path / "down")
        results = [r async for r in user.submit_many("demo", "echo", [{"i": 1}], wait=True)]
        assert results[0].ok
    async with ChutesSession(base_url=emu.base_url, api_key=CAK, hooks=hooks) as oauth:
        with pytest.raises(AuthenticationError):
            await oauth.create_job("demo", "echo", {})

    secrets = [emu.api_key, CAK, yarl.URL(status_url).query["token"]]
    secrets += [yarl.URL(u).query["token"] for u in upload_urls]
    texts = every_text(telemetry) + [repr(e) for e in events]
    assert len(telemetry.spans()) > 15 and len(events) > 40
    for secret in secrets:
        assert not [t for t in texts if secret in t], "a secret reached telemetry"
    tokens = [t for t in texts if "token=" in t]
    assert tokens and all("token=REDACTED" in t or "token=***" in t for t in tokens)
    refused = telemetry.spans("POST /jobs/{chute_id}/{method}")[-1]
    assert refused.attributes["error.type"] == "401"  # type: ignore[index]


# ----------------------------------------------------------------------------- enabling


async def test_enable_opentelemetry_is_process_wide_and_replaces_itself(emu: Emulator) -> None:
    first, second = Telemetry(), Telemetry()
    hook = ins.enable_opentelemetry(first.tracer_provider, first.meter_provider)
    assert ins.get_hooks() == (hook,)
    assert ins.enable_opentelemetry(second.tracer_provider, second.meter_provider) is not hook
    assert len(ins.get_hooks()) == 1
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as s:
        await s.create_job("ext", "run", {})
    assert first.spans() == [] and len(second.spans()) == 1
    ins.disable_opentelemetry()
    assert ins.get_hooks() == ()
    ins.disable_opentelemetry()  # nothing left: nothing happens


def test_without_opentelemetry_installed_enabling_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "chutes_jobs.instrumentation.otel")
    with pytest.raises(ConfigurationError, match=r"chutes-jobs\[otel\]"):
        ins.enable_opentelemetry()
    with pytest.raises(ConfigurationError, match=r"chutes-jobs\[otel\]"):
        ins.OpenTelemetryHook  # noqa: B018
    assert ins.get_hooks() == ()
