"""Following one created job of a ``submit_many`` run: wait for it, then download its outputs.

Polls and downloads of the whole run share two gates, so a thousand jobs waited for at once
make at most ``poll_concurrency`` GETs and ``download_concurrency`` downloads at a time.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import attrs

from ..errors import ChutesError, JobFailedError
from ..job import JobHandle
from ..models import Job
from ..polling import poll_job
from ..transfer import ProgressCallback
from .ledger import LedgerEntry, LedgerState, LedgerStore
from .options import BulkOptions
from .result import BulkOutcome, BulkResult


class JobFollower:
    """Waits for each job and downloads its outputs, recording both in the ledger."""

    def __init__(self, options: BulkOptions, ledger: LedgerStore | None):
        self.options = options
        self.ledger = ledger
        self.poll_gate = asyncio.Semaphore(options.poll_concurrency)
        self.download_gate = asyncio.Semaphore(options.download_concurrency)

    async def finish(
        self, index: int, key: str, handle: JobHandle, entry: LedgerEntry | None
    ) -> BulkResult:
        """Wait for the job, then download its outputs when the run does; the input's result.

        ``entry`` is the ledger row of an earlier run that had already created this job.
        """
        resumed = entry is not None
        try:
            job = await self.wait_for(handle)
        except ChutesError as exc:  # timeout, job gone, server down: the ledger resumes it
            return BulkResult(
                index, key, BulkOutcome.SUBMITTED, handle, handle.job, error=exc, resumed=resumed
            )
        if self.ledger is not None and (entry is None or entry.state is LedgerState.SUBMITTED):
            outcome = job.outcome_status or (job.outcome.value if job.outcome else "finished")
            await self.ledger.mark_finished(key, outcome=outcome, failed=job.failed)
        if job.failed:
            error = JobFailedError(job)
            return BulkResult(
                index, key, BulkOutcome.FAILED, handle, job, error=error, resumed=resumed
            )
        if self.options.download_to is None:
            return BulkResult(index, key, BulkOutcome.FINISHED, handle, job, resumed=resumed)
        return await self.download(index, key, handle, job, resumed)

    async def wait_for(self, handle: JobHandle) -> Job:
        """Poll one job until finished; at most ``poll_concurrency`` GETs are under way at once."""

        async def fetch() -> Job:
            async with self.poll_gate:
                return await handle.refresh()

        snapshots = poll_job(
            fetch,
            job_id=handle.id,
            policy=self.options.poll,
            timeout=self.options.wait_timeout,
            last=handle.job,
        )
        async with aclosing(snapshots):
            async for job in snapshots:
                if self.options.on_job is not None:
                    self.options.on_job(job)
        return job

    async def download(
        self, index: int, key: str, handle: JobHandle, job: Job, resumed: bool
    ) -> BulkResult:
        """Download a finished job's outputs into ``download_to/<job_id>/``."""
        assert self.options.download_to is not None
        dest = self.options.download_to / job.job_id
        try:
            async with self.download_gate:
                # overwrite: an earlier run (or attempt) may have left some files there
                paths = await handle.download_outputs(
                    dest, overwrite=True, progress=self._progress_of(job.job_id)
                )
        except (ChutesError, OSError, ExceptionGroup) as exc:  # the ledger keeps it "finished"
            return BulkResult(
                index, key, BulkOutcome.FINISHED, handle, job, error=exc, resumed=resumed
            )
        if self.ledger is not None:
            await self.ledger.mark_downloaded(key, {n: str(p) for n, p in paths.items()})
        return BulkResult(index, key, BulkOutcome.DOWNLOADED, handle, job, paths, resumed=resumed)

    def _progress_of(self, job_id: str) -> ProgressCallback | None:
        """The run's callback, each report named ``<job_id>/<filename>`` (its path under
        ``download_to``): jobs of one chute often have outputs of the same names."""
        report = self.options.progress
        if report is None:
            return None
        return lambda p: report(attrs.evolve(p, filename=f"{job_id}/{p.filename}"))
