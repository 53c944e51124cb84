"""``run_and_report``: run a job function on a worker and report its outcome, always completing."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ChutesError
from .models import Job
from .worker import parse_status_url

if TYPE_CHECKING:
    from .job import JobHandle

__all__ = ["JobFunction", "Outcome", "run_and_report", "run_job"]

log = logging.getLogger("chutes_jobs")

#: A job function: ``async def fn(*, output_dir: Path, **job_args) -> dict | Any | None``.
JobFunction = Callable[..., Awaitable[Any]]

#: Tracebacks longer than this are cut (keeping the end, where the error is).
MAX_DETAIL_CHARS = 32_000


class Outcome:
    """What a job function's run amounts to: status, result object and detail text."""

    def __init__(self, status: str, result: dict[str, Any] | None, detail: str | None) -> None:
        self.status = status
        self.result = result
        self.detail = detail


def result_object(value: Any) -> dict[str, Any] | None:
    """The ``result`` to send: a dict as is, None as null, anything else as ``{"result": value}``.

    Raises ``TypeError``/``ValueError`` when the value cannot be sent as JSON.
    """
    wrapped = value if value is None or isinstance(value, dict) else {"result": value}
    json.dumps(wrapped)
    return wrapped


def _detail_of(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= MAX_DETAIL_CHARS else "...\n" + text[-MAX_DETAIL_CHARS:]


async def run_function(fn: JobFunction, output_dir: Path, job_args: dict[str, Any]) -> Outcome:
    """Await ``fn`` and turn its return value, exception or cancellation into an outcome."""
    try:
        value = await fn(output_dir=output_dir, **job_args)
        return Outcome("complete", result_object(value), None)
    except asyncio.CancelledError:
        return Outcome("cancelled", None, "the job function was cancelled")
    except Exception as exc:
        log.warning("job function failed: %r", exc)
        return Outcome("error", None, _detail_of(exc))


async def run_job(handle: JobHandle, fn: JobFunction, job_args: dict[str, Any]) -> Job:
    """Run ``fn`` in a fresh output folder, then finish → upload outputs → complete.

    The job is completed whatever happens to the function; if the function was cancelled the
    outcome is reported as ``"cancelled"`` and the cancellation is re-raised afterwards.
    """
    output_dir = Path(tempfile.mkdtemp(prefix="chutes-job-"))
    task = asyncio.current_task()
    try:
        outcome = await run_function(fn, output_dir, job_args)
        cancelled = outcome.status == "cancelled"
        if cancelled and task is not None:
            task.uncancel()  # report first; the cancellation is raised again below
        final = await report_outcome(handle, outcome, output_dir)
    finally:
        await asyncio.to_thread(shutil.rmtree, output_dir, True)
    if cancelled:
        raise asyncio.CancelledError
    return final


async def report_outcome(handle: JobHandle, outcome: Outcome, output_dir: Path) -> Job:
    """finish → upload every file of ``output_dir`` → complete (complete runs even on failures)."""
    try:
        targets = await handle.finish(
            status=outcome.status,
            result=outcome.result,
            detail=outcome.detail,
            outputs=output_dir,
        )
        report = await handle.upload_outputs(targets)
        for name, exc in report.failed.items():
            log.error("output %s could not be uploaded: %s", name, exc)
    except ChutesError as exc:
        log.error("reporting the outcome of job %s failed: %s", handle.id, exc)
    return await handle.complete()


async def run_and_report(status_url: str, fn: JobFunction, /, **job_args: Any) -> Job:
    """Run ``fn(output_dir=..., **job_args)`` as the worker of the job at ``status_url``.

    Its return value becomes the job's ``result`` (a dict as is, None as null, anything else
    wrapped as ``{"result": value}``); an exception becomes status ``"error"`` with the
    traceback as detail; cancellation becomes ``"cancelled"``. Every file the function writes
    under ``output_dir`` (subfolders kept) is uploaded, then the job is completed. One pooled
    session (credentials from the environment are not needed) carries every call. Returns the
    final :class:`Job`.
    """
    from .session import ChutesSession

    async with ChutesSession(base_url=parse_status_url(status_url).base_url) as session:
        handle = session.job_from_status_url(status_url)
        return await run_job(handle, fn, job_args)
