"""The five operations the cancellation scenario interrupts, each with what it needs first
(``prepare``, never cancelled), the operation itself (``run``, cancelled at a seeded moment)
and a re-run to the end that checks the outcome (``rerun``, returning what is wrong)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import chutes_jobs as cj
from chutes_jobs.demo import sha256_file

from .fixtures import WORKER_CHUTE, WORKER_METHOD, submit_all
from .report import Sweep
from .server import EmulatorProcess, Started

__all__ = ["Context", "Operation", "operations"]

QUICK_POLLS = cj.PollPolicy(initial=0.005, maximum=0.02)


@dataclass
class Context:
    """What every operation may use in one trial: sessions open for this trial alone."""

    server: EmulatorProcess
    started: Started
    user: cj.ChutesSession
    worker: cj.ChutesSession
    folder: Path  # this trial's own folder
    sources: Path  # files to upload (shared, read only)
    trial: int
    sweep: Sweep


class Operation(Protocol):
    name: str

    async def prepare(self, ctx: Context) -> Any: ...
    async def run(self, ctx: Context, prepared: Any) -> None: ...
    async def rerun(self, ctx: Context, prepared: Any) -> list[str]: ...


def _files_differ(started: Started, label: str, paths: dict[str, Path]) -> list[str]:
    want = started.jobs[label]["sha256"]
    wrong = [f"{name}: missing" for name in want if name not in paths]
    wrong += [
        f"{name}: sha256 differs"
        for name, path in paths.items()
        if sha256_file(path) != want.get(name)
    ]
    return wrong


class Wait:
    """``wait`` on a job that finishes only once its worker reports it (in the re-run)."""

    name = "wait"

    async def prepare(self, ctx: Context) -> cj.JobHandle:
        return await ctx.user.create_job(WORKER_CHUTE, WORKER_METHOD, {"trial": ctx.trial})

    async def run(self, ctx: Context, prepared: cj.JobHandle) -> None:
        await prepared.wait(poll=QUICK_POLLS)

    async def rerun(self, ctx: Context, prepared: cj.JobHandle) -> list[str]:
        worker = ctx.worker.job_from_status_url(ctx.server.status_url(prepared.id))
        await worker.finish(result={"trial": ctx.trial})
        await worker.complete()
        job = await ctx.user.job(prepared.id).wait(poll=QUICK_POLLS, timeout=60)
        return [] if job.is_finished else [f"job {job.job_id} did not finish"]


class Download:
    """``download`` of one large file."""

    name = "download"

    async def prepare(self, ctx: Context) -> Path:
        return ctx.folder / "one.bin"

    async def run(self, ctx: Context, prepared: Path) -> None:
        handle = ctx.user.job(ctx.started.jobs["one"]["job_id"])
        await handle.download("one.bin", prepared)

    async def rerun(self, ctx: Context, prepared: Path) -> list[str]:
        if not await asyncio.to_thread(prepared.exists):  # else it had finished: keep it
            await self.run(ctx, prepared)
        return await asyncio.to_thread(_files_differ, ctx.started, "one", {"one.bin": prepared})


class DownloadOutputs:
    """``download_outputs`` of a job with several files in subfolders."""

    name = "download_outputs"

    async def prepare(self, ctx: Context) -> Path:
        return ctx.folder / "many"

    async def run(self, ctx: Context, prepared: Path) -> None:
        await ctx.user.job(ctx.started.jobs["many"]["job_id"]).download_outputs(prepared)

    async def rerun(self, ctx: Context, prepared: Path) -> list[str]:
        handle = ctx.user.job(ctx.started.jobs["many"]["job_id"])
        paths = await handle.download_outputs(prepared, overwrite=True)
        return await asyncio.to_thread(_files_differ, ctx.started, "many", paths)


class UploadOutputs:
    """A worker's ``upload_outputs`` after its finish."""

    name = "upload_outputs"

    async def prepare(self, ctx: Context) -> tuple[cj.JobHandle, cj.UploadTargets]:
        job = await ctx.user.create_job(WORKER_CHUTE, WORKER_METHOD, {"trial": ctx.trial})
        worker = ctx.worker.job_from_status_url(ctx.server.status_url(job.id))
        return worker, await worker.finish(result={"trial": ctx.trial}, outputs=ctx.sources)

    async def run(self, ctx: Context, prepared: tuple[cj.JobHandle, cj.UploadTargets]) -> None:
        worker, targets = prepared
        (await worker.upload_outputs(targets)).raise_for_failures()

    async def rerun(
        self, ctx: Context, prepared: tuple[cj.JobHandle, cj.UploadTargets]
    ) -> list[str]:
        earlier, targets = prepared  # a handle of the trial's first (closed) session
        worker = ctx.worker.job_from_status_url(ctx.server.status_url(earlier.id))
        report = await worker.upload_outputs(targets)
        await worker.complete()
        if not report.ok:
            return [f"re-run upload failed: {report}"]
        paths = await ctx.user.job(worker.id).download_outputs(ctx.folder / "uploaded")
        want = {name: sha256_file(path) for name, path in targets.sources.items()}
        got = {name: sha256_file(path) for name, path in paths.items()}
        return [f"{name}: stored bytes differ" for name in want if got.get(name) != want[name]]


class SubmitMany:
    """``submit_many`` with a ledger; the re-run with the same ledger creates the rest."""

    name = "submit_many"

    def __init__(self, batch: int) -> None:
        self.batch = batch

    async def prepare(self, ctx: Context) -> list[dict[str, Any]]:
        return [{"batch": ctx.trial, "i": i} for i in range(self.batch)]

    async def _submit(self, ctx: Context, inputs: list[dict[str, Any]]) -> list[cj.BulkResult]:
        ledger = ctx.folder / "run.db"
        return await submit_all(
            ctx.user, inputs, ledger, ctx.sweep, concurrency=4, cancel_grace=0.5
        )

    async def run(self, ctx: Context, prepared: list[dict[str, Any]]) -> None:
        await self._submit(ctx, prepared)

    async def rerun(self, ctx: Context, prepared: list[dict[str, Any]]) -> list[str]:
        results = await self._submit(ctx, prepared)
        jobs = await ctx.server.created_jobs()
        per_input = Counter(a["i"] for a in jobs.values() if a.get("batch") == ctx.trial)
        wrong = [f"input {i}: {n} jobs" for i, n in sorted(per_input.items()) if n > 1]
        # Created once, or (a create cut off by the cancellation) unknown and sent at most once.
        allowed = {cj.BulkOutcome.SUBMITTED: {1}, cj.BulkOutcome.UNKNOWN: {0, 1}}
        missing = [
            f"input {r.index}: {r.outcome.value}, {per_input[r.index]} jobs"
            for r in results
            if per_input[r.index] not in allowed.get(r.outcome, set())
        ]
        reported = Counter(r.index for r in results)
        missing += [
            f"input {i}: {reported[i]} results" for i in range(self.batch) if reported[i] != 1
        ]
        return wrong + missing


def operations(batch: int) -> list[Operation]:
    """The five operations, in the order trials take them."""
    return [Wait(), Download(), DownloadOutputs(), UploadOutputs(), SubmitMany(batch)]
