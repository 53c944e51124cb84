"""Running jobs of local chutes: schedule, claim an instance, then the library's worker API.

A local job is worked exactly as a user's worker would do it: the runner builds a handle from
the job status URL (``ChutesSession.job_from_status_url``) and hands the chute method to
:func:`chutes_jobs.report.run_job` (finish → upload → complete over loopback HTTP). One
:class:`~chutes_jobs.ChutesSession`, owned by the runner, carries every local job's calls.

Stopping a run: ``stop(job_id, report=True)`` (``Emulator.cancel_job``) cancels the chute
method, which ``run_job`` reports as ``"cancelled"``; ``stop(job_id, report=False)`` (a delete,
or the emulator closing) kills the run the way a node is killed: nothing more is reported.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ChutesError
from ..job import JobHandle
from ..models import InstanceSummary
from ..report import JobFunction, Outcome, report_outcome, run_job
from ..session import ChutesSession
from .store import ChuteMethod, JobRecord, Store, utcnow

__all__ = ["JobRunner"]

log = logging.getLogger("chutes_jobs.emulator")

CANCELLED_DETAIL = "Job cancelled"


class _Killed(BaseException):
    """The run was stopped without reporting (its job was deleted, or the emulator closes).

    A ``BaseException`` that is not a cancellation, so ``run_job`` neither reports nor
    swallows it, as when a worker node is killed.
    """


@dataclass
class _Run:
    """One local job's run: its task, its chute method's task once started, how it stops."""

    task: asyncio.Task[None] | None = None
    function: asyncio.Future[Any] | None = None
    report_cancel: bool = False
    killed: bool = False


class JobRunner:
    """Runs each created job of a local chute as an asyncio task, through the worker API.

    Every call goes through one pooled :class:`ChutesSession` on ``base_url`` (the
    emulator's), owned by the runner and closed by :meth:`close`.
    """

    def __init__(
        self,
        store: Store,
        status_url: Callable[[str], str],
        *,
        base_url: str,
        work_root: Path,
        schedule_delay: float,
    ) -> None:
        self._work_root = work_root
        self._store = store
        self._status_url = status_url
        self._delay = schedule_delay
        self._runs: dict[str, _Run] = {}
        #: The one pooled session every local job's worker calls go through.
        self.session = ChutesSession(base_url=base_url)

    def start(self, job: JobRecord) -> None:
        """Schedule ``job``: pending, then running on a local instance, then reported."""
        run = _Run()
        run.task = asyncio.create_task(
            self._run(job, run), name=f"chutes-emulator-job-{job.job_id}"
        )
        self._runs[job.job_id] = run
        run.task.add_done_callback(lambda _: self._forget(job.job_id, run))

    def _forget(self, job_id: str, run: _Run) -> None:
        if self._runs.get(job_id) is run:
            del self._runs[job_id]

    def stop(self, job_id: str, *, report: bool) -> bool:
        """Stop a job's run; with ``report`` its worker reports ``cancelled``.

        False when nothing is running, or (with ``report``) when the chute method has already
        returned and its outcome is being reported.
        """
        run = self._runs.get(job_id)
        if run is None or run.task is None or run.task.done():
            return False
        if not report:
            run.killed = True
            run.task.cancel()
        elif run.function is None:  # not started yet: cancelled before running
            run.report_cancel = True
            run.task.cancel()
        elif run.function.done():
            return False
        else:
            run.function.cancel()  # run_job reports "cancelled"
        return True

    async def wait(self, job_id: str | None = None) -> None:
        """Until one job's run (or every run, including ones started meanwhile) has ended."""
        while True:
            runs = self._runs.values() if job_id is None else [self._runs.get(job_id)]
            tasks = [r.task for r in runs if r is not None and r.task is not None]
            tasks = [t for t in tasks if not t.done()]
            if not tasks:
                return
            await asyncio.wait(tasks)

    async def close(self) -> None:
        """Kill every run (nothing more is reported), wait for them, close the session."""
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for job_id in list(self._runs):
            self.stop(job_id, report=False)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.session.close()

    # -- one run ---------------------------------------------------------------------------

    async def _run(self, job: JobRecord, run: _Run) -> None:
        handle = self.session.job_from_status_url(self._status_url(job.job_id))
        try:
            await self._execute(job, run, handle)
        except asyncio.CancelledError:
            if not run.report_cancel or run.killed:
                raise
            _uncancel()
            cancelled = report_outcome(handle, Outcome("cancelled", None, CANCELLED_DETAIL), None)
            await self._guarded(job, cancelled)
        except _Killed:
            log.info("local job %s stopped without reporting", job.job_id)

    async def _execute(self, job: JobRecord, run: _Run, handle: JobHandle) -> None:
        await asyncio.sleep(self._delay)
        if self._store.jobs.get(job.job_id) is not job or job.status != "pending":
            return  # deleted, or already reported by an outside worker
        _claim(job)
        method = job.chute.methods[job.method]
        if method is None:  # left to an external worker holding the job status URL
            return
        kwargs = {k: v for k, v in job.job_args.items() if k != "_disk_gb"}
        function = _killable(run, method)
        await self._guarded(job, run_job(handle, function, kwargs, work_dir=self._work_root))

    async def _guarded(self, job: JobRecord, reporting: Any) -> None:
        """Await the reporting; a failure to report is logged, as a node would log it."""
        try:
            await reporting
        except ChutesError as exc:
            log.warning("local job %s could not report its outcome: %s", job.job_id, exc)


def _killable(run: _Run, method: ChuteMethod) -> JobFunction:
    """``method`` run in its own task (so a cancel can target it alone), killable via ``run``."""

    async def function(*, output_dir: Path, **kwargs: Any) -> Any:
        run.function = asyncio.ensure_future(method(output_dir=output_dir, **kwargs))
        try:
            return await run.function
        except asyncio.CancelledError:
            if run.killed:
                raise _Killed from None
            raise

    return function


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()


def _claim(job: JobRecord) -> None:
    """A local node picks the job up: it gets an instance and is running."""
    job.instance = InstanceSummary(
        instance_id=str(uuid.uuid4()),
        region="local",
        active=True,
        verified=True,
        last_verified_at=utcnow(),
    )
    job.active = job.verified = True
    job.status = "running"
    job.touch()
