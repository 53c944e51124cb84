"""``JobHandle``: one job through its lifecycle, from the user's side and from the worker's."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import downloads, report, worker
from ._http import as_job
from ._job_args import DISK_GB_MAX as DISK_GB_MAX
from ._job_args import DISK_GB_MIN as DISK_GB_MIN
from ._job_args import create_body, create_path, segment
from ._progress_bar import progress_option
from .errors import (
    ConfigurationError,
    DeleteFailedError,
    JobFailedError,
    NotFoundError,
    OutputMissingError,
    ServerError,
    unreadable_job_error,
)
from .instrumentation.scopes import notify_state, operation
from .models import Job, OutputFile
from .polling import PollPolicy, poll_job
from .retry import CallKind, RetryPolicy
from .transfer import ProgressCallback

if TYPE_CHECKING:
    from ._http import Transport
    from .worker import UploadReport, UploadResult, UploadTargets

__all__ = ["DISK_GB_MAX", "DISK_GB_MIN", "JobHandle", "create_job", "segment"]

log = logging.getLogger("chutes_jobs")


async def create_job(
    session: Transport,
    chute_id: str,
    method: str,
    args: Mapping[str, Any] | None = None,
    *,
    disk_gb: float | None = None,
    retry_policy: RetryPolicy | None = None,
) -> JobHandle:
    """Create (and so pay for) one job; see :meth:`ChutesSession.create_job`."""
    path = create_path(chute_id, method)
    body = create_body(args, disk_gb)
    job: Job = await session.request(
        "POST",
        path,
        kind=CallKind.CREATE,
        json=body,
        retry_policy=retry_policy,
        decode=as_job("POST", path),
    )
    log.info("created job %s on chute %s method %s", job.job_id, chute_id, method)
    notify_state(session.hooks, job.job_id, None, job)
    return JobHandle(session, job.job_id, job=job)


def _first_uploaded(job: Job, file: OutputFile | str) -> OutputFile:
    """``file`` as listed in ``job``; :class:`OutputMissingError` if never uploaded."""
    name_or_id = file.file_id if isinstance(file, OutputFile) else file
    resolved = job.file(name_or_id)
    if not resolved.uploaded:
        raise OutputMissingError(resolved.filename)
    return resolved


class JobHandle:
    """Drives one job: poll and download as its user, or finish, upload and complete as its worker.

    Get one from :meth:`ChutesSession.create_job`, :meth:`ChutesSession.job` or, on a worker,
    :meth:`ChutesSession.job_from_status_url`. :attr:`job` holds the last snapshot seen.
    """

    def __init__(
        self,
        session: Transport,
        job_id: str,
        *,
        job: Job | None = None,
        token: str | None = None,
    ) -> None:
        segment(job_id, "job_id")
        self._session = session
        self._id = job_id
        self._job = job
        self._token = token

    def __repr__(self) -> str:
        state = self._job.state.value if self._job is not None else "unknown"
        worker_side = ", worker" if self._token else ""
        return f"<JobHandle {self._id} {state}{worker_side}>"

    @property
    def id(self) -> str:
        """The job id."""
        return self._id

    @property
    def job(self) -> Job | None:
        """The last snapshot of the job seen by this handle (None before any)."""
        return self._job

    @property
    def path(self) -> str:
        """The job's API path, ``/jobs/{job_id}``."""
        return f"/jobs/{quote(self._id, safe='')}"

    def _keep(self, job: Job) -> Job:
        """Store a new snapshot; tell the hooks when the job's state changed."""
        previous, self._job = self._job, job
        if previous is None or previous.state is not job.state:
            was = None if previous is None else previous.state
            notify_state(self._session.hooks, self._id, was, job)
        return job

    # -- user side ---------------------------------------------------------------------------

    async def refresh(self) -> Job:
        """Fetch the job's current snapshot (GET), store it in :attr:`job` and return it.

        An answer that is not a Job (empty, cut short, HTML) is retried like a 5xx; a
        :class:`~chutes_jobs.ProtocolError` is raised only once the retry policy is spent. When
        every attempt answers a bare 500, :class:`JobUnreadableError` says the likely cause (on
        the live server: the worker finished the job with a non-object result).
        """
        try:
            job: Job = await self._session.request(
                "GET", self.path, kind=CallKind.READ, decode=as_job("GET", self.path)
            )
        except ServerError as exc:
            raise unreadable_job_error(exc, self._id) from exc
        return self._keep(job)

    async def watch(
        self, *, timeout: float | None = None, poll: PollPolicy | None = None
    ) -> AsyncIterator[Job]:
        """Yield a snapshot each time the job's state is seen to change, until it is finished.

        The first snapshot is always yielded, then one per observed change of
        :attr:`Job.state` (pending, running, finished), so each state appears at most once;
        the finished snapshot is the last. Polling speeds up again whenever anything in the
        job changed (outputs listed, status, ...). Raises :class:`JobTimeoutError` when
        ``timeout`` seconds pass first; the job keeps running. Cancelling the iteration
        cancels only the polling.
        """
        previous: Job | None = None
        snapshots = poll_job(
            self.refresh, job_id=self._id, policy=poll, timeout=timeout, last=self._job
        )
        async with aclosing(snapshots):
            async for job in snapshots:
                if previous is None or job.state is not previous.state:
                    yield job
                previous = job

    async def wait(
        self,
        *,
        timeout: float | None = None,
        poll: PollPolicy | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Poll until the job is finished and return the final :class:`Job`.

        Raises :class:`JobFailedError` (with its ``detail``) when :attr:`Job.outcome` is
        ``FAILED`` unless ``raise_on_failure=False`` (``UNKNOWN`` returns normally), and
        :class:`JobTimeoutError` after ``timeout`` seconds (the job keeps running).
        """
        final: Job | None = None
        with operation(self._session.hooks, "wait", self._id) as waiting:
            async for snapshot in self.watch(timeout=timeout, poll=poll):
                final = snapshot
            assert final is not None and final.is_finished
            waiting.outcome = "failed" if final.failed else "finished"
            if raise_on_failure and final.failed:
                raise JobFailedError(final)
        return final

    async def delete(self) -> None:
        """Delete the job, its stored files, and stop its worker.

        A 404 means the job is already gone (success). After a server error a GET decides:
        if the job still exists (the live server's bug: it answers 500 and keeps the job)
        :class:`DeleteFailedError` is raised; on the live service the job's files and worker
        may already be gone even then.
        """
        try:
            await self._session.request("DELETE", self.path, kind=CallKind.DELETE)
        except NotFoundError:
            log.info("job %s already gone", self._id)
        except ServerError as exc:
            await self._settle_failed_delete(exc)
        else:
            log.info("deleted job %s", self._id)

    async def _settle_failed_delete(self, exc: ServerError) -> None:
        try:
            await self.refresh()
        except NotFoundError:
            log.info("job %s gone after a failed delete answer", self._id)
            return
        raise DeleteFailedError(
            status=exc.status,
            detail=(
                f"the server failed to delete job {self._id} (HTTP {exc.status}) and the job "
                "still exists; on the live service its files and worker may already be gone"
            ),
            method=exc.method,
            url=exc.url,
            body_excerpt=exc.body_excerpt,
            attempts=exc.attempts,
        ) from exc

    async def output_file(self, file: OutputFile | str) -> OutputFile:
        """Resolve an :class:`OutputFile`, a file id or a filename to this job's output file."""
        if isinstance(file, OutputFile):
            return file
        if self._job is not None:
            try:
                return self._job.file(file)
            except KeyError:
                pass
        return (await self.refresh()).file(file)

    async def download(
        self,
        file: OutputFile | str,
        dest: str | PathLike[str],
        *,
        progress: ProgressCallback | bool | None = None,
        overwrite: bool = False,
        fsync: bool = True,
    ) -> Path:
        """Stream one output file to ``dest`` and return its path.

        ``file`` is an :class:`OutputFile`, a file id or a filename. Bytes go to
        ``dest.part`` first; the file appears under ``dest`` only once complete (and, with
        ``fsync``, flushed to disk). A dropped connection or short body resumes with ``Range``
        where the server answers 206 and restarts where it answers 200; every attempt that
        gets further than the ones before renews the retry budget; a partial is resumed only
        when its ``.part.json`` record names this job, file and size (README, "Downloads").
        ``FileExistsError`` if ``dest`` exists and not ``overwrite``;
        :class:`OutputMissingError` if the worker never uploaded the file;
        :class:`DownloadInProgressError` if another download owns ``dest``'s partial;
        :class:`UnsafePathError` if a link or another user's file sits at its partial's names;
        :class:`InsufficientSpaceError` if the file cannot fit; :class:`IncompleteTransferError`
        when the retries ran out before the body was proven complete.
        ``progress``: a callback getting :class:`TransferProgress` snapshots, or ``True`` for a
        progress bar where one can be drawn (a terminal, Jupyter; needs rich, the ``cli``
        extra), nothing elsewhere.
        """
        resolved = await self._uploaded_file(file)
        with progress_option(progress) as callback:
            return await downloads.download_file(
                self._session,
                self._id,
                resolved,
                Path(dest),
                progress=callback,
                overwrite=overwrite,
                fsync=fsync,
            )

    async def _uploaded_file(self, file: OutputFile | str) -> OutputFile:
        """``file`` resolved against the last snapshot, refreshed when that one is stale."""
        if isinstance(file, OutputFile) and file.uploaded:
            return file
        if self._job is not None:
            try:
                return _first_uploaded(self._job, file)
            except (KeyError, OutputMissingError):
                pass  # listed or uploaded since that snapshot, perhaps
        return _first_uploaded(await self.refresh(), file)

    async def download_outputs(
        self,
        dest_dir: str | PathLike[str],
        *,
        concurrency: int = 4,
        progress: ProgressCallback | bool | None = None,
        overwrite: bool = False,
        fsync: bool = True,
    ) -> dict[str, Path]:
        """Download every output file under ``dest_dir``, keeping subfolders.

        Returns ``{filename: path}``. Unsafe names (absolute, ``..``, drive letters, NUL, any
        escape from ``dest_dir``) are refused with :class:`UnsafePathError` while the other
        files still download. If any file fails, a :class:`DownloadOutputsError` (an
        ``ExceptionGroup``) is raised after all others finished; its ``downloaded`` holds the
        paths that landed. An existing file is kept (``FileExistsError`` in the group) unless
        ``overwrite``. ``fsync=False`` skips flushing each file to disk before its rename.
        ``progress``: a callback getting :class:`TransferProgress` snapshots, or ``True`` for
        a bar per file where one can be drawn (a terminal, Jupyter; needs rich, the ``cli``
        extra), nothing elsewhere.
        """
        job = self._job if self._job is not None and self._job.is_finished else None
        with (
            operation(self._session.hooks, "download_outputs", self._id),
            progress_option(progress) as callback,
        ):
            job = job or await self.refresh()
            return await downloads.download_all(
                self._session,
                job,
                Path(dest_dir),
                concurrency=concurrency,
                progress=callback,
                overwrite=overwrite,
                fsync=fsync,
            )

    # -- worker side (a handle from job_from_status_url holds the job token; never in its repr)

    def _worker_token(self) -> str:
        token = self._token
        if not token:
            raise ConfigurationError(
                f"job {self._id}: worker calls (finish, upload, complete, run_and_report) need "
                "the job's token, and this handle has none; build it with "
                "ChutesSession.job_from_status_url(status_url)"
            )
        return token

    def _uploaded_names(self) -> set[str]:
        """Filenames this worker uploaded since its last finish (for a lost complete answer)."""
        names: set[str] | None = getattr(self, "_uploaded", None)
        if names is None:
            names = set()
            self._uploaded: set[str] = names
        return names

    async def finish(
        self,
        *,
        status: str = "complete",
        result: Mapping[str, Any] | None = None,
        detail: str | None = None,
        outputs: worker.OutputsSpec = None,
    ) -> UploadTargets:
        """Report the job's outcome and get one upload URL per output file (worker side).

        ``outputs`` is ``{relative_name: path}`` or a directory walked recursively (relative
        POSIX names, subfolders kept). ``result`` must be a mapping or None and JSON-encodable
        (anything else is refused before sending: the live server would break the job). For a
        status other than ``"complete"`` a ``detail`` text is always sent (a default one if not
        given). The outcome is also recorded in ``result`` under ``OUTCOME_KEY`` (see
        ``worker.finish_body``). Unsafe or unservable output names (``..``, not latin-1, a
        newline, ...) raise :class:`OutputNameError` naming each, before anything is sent.
        Calling finish again before :meth:`complete` replaces the file list and hands out new
        URLs.
        """
        token = self._worker_token()
        targets = await worker.finish_job(
            self._session,
            self.path,
            token,
            status=status,
            result=result,
            detail=detail,
            outputs=outputs,
        )
        self._keep(targets.job)
        self._uploaded_names().clear()
        return targets

    async def upload(
        self,
        name: str,
        source: str | PathLike[str],
        url: str,
        *,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        """Upload one output file to its upload URL (from :meth:`finish`'s targets).

        A multipart ``PUT`` with exactly the parts ``file`` and ``path``, streamed from disk
        with a known ``Content-Length``; retried on connection errors and 5xx, re-opening the
        file and sending it whole each time. ``progress`` gets :class:`TransferProgress`
        snapshots (``done`` restarts from 0 on a retry).
        """
        self._worker_token()
        result = await worker.upload_file(
            self._session, name, Path(source), url, progress=progress, job_id=self._id
        )
        self._uploaded_names().add(name)
        return result

    async def upload_outputs(
        self,
        targets: UploadTargets,
        *,
        concurrency: int = 8,
        progress: ProgressCallback | None = None,
    ) -> UploadReport:
        """Upload every file of ``targets``, at most ``concurrency`` at once.

        One file failing (after its retries) does not stop the others, and nothing is raised
        for it: the :class:`UploadReport` says which succeeded and which failed, and why
        (``report.failed``, ``report.reasons``, ``report.raise_for_failures()``).
        """
        self._worker_token()
        with operation(self._session.hooks, "upload_outputs", self._id) as uploading:
            report = await worker.upload_all(
                self._session, targets, concurrency=concurrency, progress=progress
            )
            uploading.outcome = "ok" if report.ok else "failed"
        self._uploaded_names().update(report.succeeded)
        return report

    async def complete(self) -> Job:
        """Close the job after its uploads (worker side) and return the final snapshot.

        Files listed by finish but not uploaded make the job a ``partial_failure`` on the
        server. Safe to retry, and safe after a restart: ``400 Job already finished`` (after a
        lost answer, aiohttp's own re-send, or a complete by this worker before it restarted)
        counts as success and never raises. The final job is then read back if the session
        has user credentials; else (a worker token cannot read a job) it is built from what
        this handle knows, marked :attr:`Job.assumed`: the last snapshot it saw marked
        finished, or with none (a handle fresh from ``job_from_status_url``) a Job holding
        only its ``job_id`` and a ``finished_at`` of now.
        """
        final = await worker.complete_job(
            self._session,
            self._id,
            self.path,
            self._worker_token(),
            last=self._job,
            uploaded=self._uploaded_names(),
        )
        return self._keep(final)

    async def run_and_report(self, fn: report.JobFunction, /, **job_args: Any) -> Job:
        """Run ``fn(output_dir=..., **job_args)`` as this job's worker, then report and complete.

        Reuses this handle's session; see :func:`chutes_jobs.run_and_report` (which opens its
        own session from a status URL) for what is reported.
        """
        self._worker_token()
        return await report.run_job(self, fn, job_args)
