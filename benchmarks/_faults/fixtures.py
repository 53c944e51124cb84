"""The emulator as the scenarios set it up: a chute whose jobs wait for an outside worker,
finished jobs whose output files are placed in its store directly, a user's session with
quick retries, ``submit_many`` to the end."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chutes_jobs as cj
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.storage import BlobStore
from chutes_jobs.emulator.store import JobRecord, utcnow

from .report import Sweep

__all__ = [
    "WORKER_CHUTE",
    "PlacedJob",
    "add_worker_chute",
    "place_finished_job",
    "quick_retries",
    "scratch_dir",
    "seeded_bytes",
    "submit_all",
    "user_on_emulator",
]

#: A chute whose method runs nowhere: its jobs wait for a worker holding their status URL
#: (the scenario), and creating one costs the emulator nothing but a record.
WORKER_CHUTE = "faults"
WORKER_METHOD = "work"


def add_worker_chute(emu: Emulator) -> str:
    """Register :data:`WORKER_CHUTE` (its jobs are left to an outside worker)."""
    return emu.add_chute(WORKER_CHUTE, {WORKER_METHOD: None})


def quick_retries(max_attempts: int = 8) -> cj.RetryPolicy:
    """The default policy's rules with millisecond backoffs: faults come by the thousand
    here, and the policy's decisions, not its sleeps, are what is measured."""
    return cj.RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=0.002,
        max_backoff=0.02,
        retry_after_cap=0.05,
        deadline=60.0,
    )


@contextlib.asynccontextmanager
async def user_on_emulator(
    sweep: Sweep, *, attempts: int = 8, **options: Any
) -> AsyncIterator[tuple[Emulator, cj.ChutesSession]]:
    """An emulator (``options``; no demo chute) with :data:`WORKER_CHUTE`, and an open session
    of its user with :func:`quick_retries` (``attempts``); the sweep looks for its API key."""
    async with Emulator(demo_chute=False, **options) as emu:
        add_worker_chute(emu)
        sweep.secret(emu.api_key, "API key")
        policy = quick_retries(attempts)
        async with cj.ChutesSession(
            base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy
        ) as session:
            yield emu, session


async def submit_all(
    session: cj.ChutesSession,
    inputs: list[dict[str, Any]],
    ledger: Path,
    sweep: Sweep,
    **options: Any,
) -> list[cj.BulkResult]:
    """``submit_many`` of ``inputs`` to :data:`WORKER_CHUTE` with ``ledger`` (and ``options``)
    to the end: the results in the order they came; the sweep sees each error."""
    results: list[cj.BulkResult] = []
    run = session.submit_many(WORKER_CHUTE, WORKER_METHOD, inputs, ledger=ledger, **options)
    async with aclosing(run):
        async for result in run:
            results.append(result)
            if result.error is not None:
                sweep.exception(result.error)
    return results


def seeded_bytes(seed: int, size: int) -> bytes:
    """``size`` pseudo-random (incompressible) bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class PlacedJob:
    """A finished job placed in an emulator's store: its id and each output's sha256."""

    job_id: str
    sha256: dict[str, str]


def place_finished_job(emu: Emulator, outputs: Mapping[str, bytes]) -> PlacedJob:
    """A finished job of :data:`WORKER_CHUTE` whose outputs are ``outputs``, uploaded.

    The names go into the store as given, whatever they are: a worker using this library
    would refuse to report hostile names, so a scenario that needs a server serving them
    (a compromised or foreign worker) puts them there itself.
    """
    assert emu.data_dir is not None, "start the emulator first"
    chute = next(c for c in emu.store.chutes.values() if c.name == WORKER_CHUTE)
    job = JobRecord(
        job_id=str(uuid.uuid4()),
        user_id=emu.user.user_id,
        chute=chute,
        method=WORKER_METHOD,
        job_args={},
    )
    blobs = BlobStore(emu.data_dir)
    job.output_files = {}
    for name, data in outputs.items():
        file_id = cj.file_id_for(job.job_id, name)
        path = blobs.blob_path(job.job_id, file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        job.output_files[file_id] = {
            "filename": name,
            "path": job.storage_key(name),
            "uploaded": True,
        }
    job.status = "complete"
    job.result = {}
    job.finished_at = job.updated_at = utcnow()
    emu.store.jobs[job.job_id] = job
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in outputs.items()}
    return PlacedJob(job.job_id, digests)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder, in memory (``/dev/shm``) where there is one: the scenarios write
    gigabytes that are checked and deleted at once, and a disk's speed is not the subject."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix=f"chutes-faults-{prefix}-", dir=where))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
