"""Running jobs of local chutes: schedule, assign an instance, execute, report over HTTP."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from ..models import InstanceSummary
from .store import JobRecord, Store, utcnow

__all__ = ["JobRunner", "list_outputs", "report_outcome"]

log = logging.getLogger("chutes_jobs.emulator")

Outcome = tuple[str, dict[str, Any] | None, str | None]


def list_outputs(output_dir: Path) -> list[str]:
    """Every file under ``output_dir``, as sorted relative POSIX paths."""
    files = (p for p in output_dir.rglob("*") if p.is_file())
    return sorted(p.relative_to(output_dir).as_posix() for p in files)


async def report_outcome(
    http: aiohttp.ClientSession,
    status_url: str,
    *,
    status: str,
    result: dict[str, Any] | None,
    detail: str | None,
    output_dir: Path,
) -> None:
    """The worker side of a job: finish, upload every output file, complete.

    Uses nothing but the job status URL (``{base}/jobs/{id}?token=...``) and the upload URLs
    that finish answers, as a worker node does.
    """
    outputs = await asyncio.to_thread(list_outputs, output_dir)
    body = {"status": status, "result": result, "detail": detail, "output_filenames": outputs}
    async with http.post(status_url, json=body) as response:
        response.raise_for_status()
        upload_urls: dict[str, str] = (await response.json())["output_storage_urls"]
    for name, url in upload_urls.items():
        with (output_dir / name).open("rb") as fh:
            form = aiohttp.FormData()
            form.add_field(
                "file", fh, filename=Path(name).name, content_type="application/octet-stream"
            )
            form.add_field("path", name)
            async with http.put(url, data=form) as response:
                response.raise_for_status()
    async with http.put(status_url, json={"status": "done"}) as response:
        response.raise_for_status()


class JobRunner:
    """Runs each created job of a local chute as an asyncio task."""

    def __init__(
        self,
        store: Store,
        http: aiohttp.ClientSession,
        status_url: Callable[[str], str],
        *,
        work_root: Path,
        schedule_delay: float,
    ) -> None:
        self._work_root = work_root
        self._store = store
        self._http = http
        self._status_url = status_url
        self._delay = schedule_delay
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._report_cancel: set[str] = set()

    def start(self, job: JobRecord) -> None:
        """Schedule ``job``: pending, then running on a local instance, then reported."""
        task = asyncio.create_task(self._run(job), name=f"chutes-emulator-job-{job.job_id}")
        self._tasks[job.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.job_id, None))

    def stop(self, job_id: str, *, report: bool) -> bool:
        """Cancel a job's run; with ``report`` the worker still reports ``cancelled``."""
        task = self._tasks.get(job_id)
        if task is None:
            return False
        if report:
            self._report_cancel.add(job_id)
        task.cancel()
        return True

    async def wait(self, job_id: str | None = None) -> None:
        """Until one job's run (or every run, including ones started meanwhile) has ended."""
        while True:
            if job_id is None:
                tasks = [t for t in self._tasks.values() if not t.done()]
            else:
                tasks = [t for t in [self._tasks.get(job_id)] if t is not None and not t.done()]
            if not tasks:
                return
            await asyncio.wait(tasks)

    async def close(self) -> None:
        """Cancel every run and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: JobRecord) -> None:
        output_dir = Path(
            await asyncio.to_thread(tempfile.mkdtemp, prefix="job-", dir=self._work_root)
        )
        try:
            try:
                outcome = await self._execute(job, output_dir)
            except asyncio.CancelledError:
                if not self._cancel_is_reported(job.job_id):
                    raise
                outcome = ("cancelled", None, "Job cancelled")
            if outcome is not None:
                await self._report(job, outcome, output_dir)
        finally:
            await asyncio.to_thread(shutil.rmtree, output_dir, True)

    async def _execute(self, job: JobRecord, output_dir: Path) -> Outcome | None:
        await asyncio.sleep(self._delay)
        if self._store.jobs.get(job.job_id) is not job or job.status != "pending":
            return None  # deleted, or already reported by an outside worker
        _claim(job)
        method = job.chute.methods[job.method]
        if method is None:  # left to an external worker holding the job status URL
            return None
        kwargs = {k: v for k, v in job.job_args.items() if k != "_disk_gb"}
        try:
            value = await method(output_dir=output_dir, **kwargs)
        except Exception:
            return "error", None, traceback.format_exc()
        return "complete", value if isinstance(value, dict) else {"result": value}, None

    def _cancel_is_reported(self, job_id: str) -> bool:
        if job_id not in self._report_cancel:
            return False
        self._report_cancel.discard(job_id)
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    async def _report(self, job: JobRecord, outcome: Outcome, output_dir: Path) -> None:
        status, result, detail = outcome
        try:
            await report_outcome(
                self._http,
                self._status_url(job.job_id),
                status=status,
                result=result,
                detail=detail,
                output_dir=output_dir,
            )
        except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
            log.warning("local job %s could not report its outcome: %r", job.job_id, exc)


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
