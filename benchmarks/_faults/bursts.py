"""Scenario 2: bursts of 429 and 5xx answers while ``submit_many`` creates many jobs, and
while workers finish, upload and complete theirs: no job lost, no create sent twice, no
upload lost (every check reads the emulator's own records)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chutes_jobs as cj
from chutes_jobs.demo import sha256_file
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.faults import Fault
from chutes_jobs.emulator.storage import BlobStore

from .fixtures import quick_retries, scratch_dir, submit_all, user_on_emulator
from .report import Figure, Sweep, count_figure, first_of

__all__ = ["FULL", "REDUCED", "Size", "plan_bursts", "run"]

NAME = "bursts"

#: (status, Retry-After, HTML page): what a create may meet and retry (the server did not act).
CREATE_REFUSALS = ((429, "0.01", False), (429, None, False), (503, None, False), (503, "0", False))
#: What a worker's finish, upload or complete may meet: the same, and 500 and a proxy's 502.
WORKER_REFUSALS = (*CREATE_REFUSALS, (500, None, False), (502, None, True))


@dataclass(frozen=True)
class Size:
    """``creates`` inputs through submit_many; ``workers`` jobs reported by their worker,
    each with ``files_per_job`` outputs."""

    creates: int
    workers: int
    files_per_job: int


FULL = Size(creates=1000, workers=50, files_per_job=3)
REDUCED = Size(creates=1000, workers=50, files_per_job=3)


def plan_bursts(
    emu: Emulator,
    route: str,
    rng: random.Random,
    *,
    requests: int,
    gap: tuple[int, int],
    length: tuple[int, int],
    refusals: Sequence[tuple[int, str | None, bool]],
) -> list[Fault]:
    """Bursts of refusals over the first ``requests`` requests of ``route``: each lets a
    seeded ``gap`` of requests through, then refuses a seeded ``length`` in a row."""
    faults: list[Fault] = []
    covered = 0
    while covered < requests:
        status, retry_after, html = rng.choice(refusals)
        after, times = rng.randint(*gap), rng.randint(*length)
        faults.append(
            emu.faults.add(
                route, status=status, retry_after=retry_after, html=html, times=times, after=after
            )
        )
        covered += after + times
    return faults


def _applied(faults: list[Fault]) -> str:
    by_status = Counter({f"{f.status}": 0 for f in faults})
    for fault in faults:
        by_status[f"{fault.status}"] += fault.fired
    bursts = sum(1 for f in faults if f.fired)
    parts = ", ".join(f"{n} x {status}" for status, n in sorted(by_status.items()) if n)
    return f"{bursts} bursts: {parts}"


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """Creates under bursts, then workers under bursts."""
    rng = random.Random(f"{seed}-bursts")
    with scratch_dir(NAME) as root:
        async with user_on_emulator(sweep, attempts=12) as (emu, session):
            figures = await _creates(emu, session, size.creates, rng, root, sweep)
            figures += await _workers(emu, session, size, rng, sweep)
    return figures


async def _submit(
    session: cj.ChutesSession, inputs: list[dict[str, Any]], ledger: Path, sweep: Sweep
) -> dict[int, cj.BulkResult]:
    results = await submit_all(session, inputs, ledger, sweep, concurrency=64)
    sweep.reprs(results[:20])
    return {result.index: result for result in results}


def _server_jobs(emu: Emulator, batch: str) -> dict[int, list[str]]:
    """The emulator's jobs of one batch, by input number."""
    jobs: dict[int, list[str]] = defaultdict(list)
    for job_id, job in emu.store.jobs.items():
        if job.job_args.get("batch") == batch:
            jobs[job.job_args["i"]].append(job_id)
    return jobs


async def _creates(
    emu: Emulator,
    session: cj.ChutesSession,
    count: int,
    rng: random.Random,
    root: Path,
    sweep: Sweep,
) -> list[Figure]:
    faults = plan_bursts(
        emu,
        "create",
        rng,
        requests=count,
        gap=(5, 60),
        length=(2, 12),
        refusals=CREATE_REFUSALS,
    )
    inputs = [{"batch": "creates", "i": i} for i in range(count)]
    results = await _submit(session, inputs, root / "creates.db", sweep)
    emu.faults.clear("create")
    on_server = _server_jobs(emu, "creates")
    lost, duplicates = _lost_and_duplicates(count, results, on_server)
    created = sum(1 for r in results.values() if r.outcome is cj.BulkOutcome.SUBMITTED)
    return [
        Figure(
            NAME,
            f"creates through submit_many under {_applied(faults)}",
            f"{created}/{count} created",
            created == count,
            why=first_of(
                [
                    f"input {r.index}: {r.outcome.value} {r.error}"
                    for r in results.values()
                    if not r.ok
                ]
            ),
        ),
        count_figure(NAME, "creates: jobs lost", lost),
        count_figure(NAME, "creates: duplicate creates", duplicates),
    ]


def _lost_and_duplicates(
    count: int, results: dict[int, cj.BulkResult], on_server: dict[int, list[str]]
) -> tuple[list[str], list[str]]:
    """Lost: a job the server holds that its input's result does not name, a result naming
    a job the server does not hold, an input without a result. Duplicates: more than one
    job for one input."""
    lost: list[str] = []
    duplicates: list[str] = []
    for i in range(count):
        result, jobs = results.get(i), on_server.get(i, [])
        if len(jobs) > 1:
            duplicates.append(f"input {i}: {len(jobs)} jobs")
        if result is None:
            lost.append(f"input {i}: no result")
        elif result.job_id is not None and result.job_id not in jobs:
            lost.append(f"input {i}: reported job {result.job_id} does not exist")
        elif result.job_id is None and jobs:
            lost.append(f"input {i}: job {jobs[0]} exists, the result names none")
    return lost, duplicates


async def _workers(
    emu: Emulator, session: cj.ChutesSession, size: Size, rng: random.Random, sweep: Sweep
) -> list[Figure]:
    inputs = [{"batch": "workers", "i": i} for i in range(size.workers)]
    with scratch_dir(NAME) as root:
        results = await _submit(session, inputs, root / "workers.db", sweep)
    job_ids = [r.job_id for r in results.values() if r.job_id is not None]
    calls = {"finish": size.workers, "upload": size.workers * size.files_per_job}
    calls["complete"] = size.workers
    faults = [
        fault
        for route, requests in calls.items()
        for fault in plan_bursts(
            emu,
            route,
            rng,
            requests=requests,
            gap=(2, 12),
            length=(1, 4),
            refusals=WORKER_REFUSALS,
        )
    ]
    sent: dict[tuple[str, str], str] = {}

    async def outputs(*, output_dir: Path, job_id: str, files: int) -> dict[str, int]:
        for n in range(files):
            data = random.Random(f"{job_id}-{n}").randbytes(1024 * (1 + n * 97 % 256))
            sent[job_id, f"out/{n}.bin"] = hashlib.sha256(data).hexdigest()
            (output_dir / "out").mkdir(exist_ok=True)
            (output_dir / "out" / f"{n}.bin").write_bytes(data)
        return {"files": files}

    worker = cj.ChutesSession(base_url=emu.base_url, retry_policy=quick_retries(12))
    async with worker:
        handles = [worker.job_from_status_url(emu.job_status_url(j)) for j in job_ids]
        done = await asyncio.gather(
            *(h.run_and_report(outputs, job_id=h.id, files=size.files_per_job) for h in handles),
            return_exceptions=True,
        )
        sweep.reprs(handles[:10])
    for outcome in done:
        if isinstance(outcome, BaseException):
            sweep.exception(outcome)
    emu.faults.clear()
    jobs_lost, uploads_lost = _reported(emu, job_ids, sent, size.files_per_job, done)
    return [
        count_figure(
            NAME,
            f"{size.workers} workers' finish/upload/complete under {_applied(faults)}: jobs lost",
            jobs_lost,
            total=size.workers,
        ),
        count_figure(
            NAME, "workers: uploads lost", uploads_lost, total=size.workers * size.files_per_job
        ),
    ]


def _reported(
    emu: Emulator,
    job_ids: list[str],
    sent: dict[tuple[str, str], str],
    files: int,
    done: list[Any],
) -> tuple[list[str], list[str]]:
    """Jobs that did not end ``complete`` with their result; files not stored as sent."""
    assert emu.data_dir is not None
    blobs = BlobStore(emu.data_dir)
    jobs_lost: list[str] = []
    uploads_lost: list[str] = []
    if len(job_ids) != len(done):
        jobs_lost.append(f"{len(job_ids)} jobs created, {len(done)} workers ran")
    for job_id, outcome in zip(job_ids, done, strict=False):
        job = emu.job(job_id)
        if isinstance(outcome, BaseException):
            jobs_lost.append(f"{job_id}: the worker raised {type(outcome).__name__}: {outcome}")
        elif not (job.finished_at and job.status == "complete" and job.result["files"] == files):
            jobs_lost.append(f"{job_id}: {job.status}: {job.error_detail}")
        for name in (f"out/{n}.bin" for n in range(files)):
            file_id = cj.file_id_for(job_id, name)
            info = (job.output_files or {}).get(file_id)
            blob = blobs.blob_path(job_id, file_id)
            if info is None or not info["uploaded"] or not blob.is_file():
                uploads_lost.append(f"{job_id}/{name}: not stored")
            elif sha256_file(blob) != sent.get((job_id, name)):
                uploads_lost.append(f"{job_id}/{name}: stored bytes differ from the sent ones")
    return jobs_lost, uploads_lost
