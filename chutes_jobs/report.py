"""``run_and_report``: run a job function on a worker and report its outcome, always completing.

The function gets a fresh output folder; what it returns, raises or how it is cancelled
becomes the job's outcome (:class:`Outcome`), which is then reported through the worker API
of :class:`~chutes_jobs.job.JobHandle`: finish → upload every file of the folder → complete.

* return value: a dict is the ``result`` as is, ``None`` is ``null``, anything else is wrapped
  as ``{"result": value}`` (the live server breaks a job whose result is not an object); a
  value that is not strict JSON makes the job an ``"error"`` saying so;
* exception: status ``"error"``, ``detail`` the exception's line (``RuntimeError: ...``)
  followed by the formatted traceback;
* cancellation of the function: status ``"cancelled"``; if the task running ``run_job`` was
  the one cancelled, the cancellation is re-raised once the job is reported.

Whatever the status, finish records it in ``result`` under ``OUTCOME_KEY`` with the detail's
first line (see ``worker.finish_body``), so the user side reads it as ``Job.outcome``.

Two entry points: :func:`chutes_jobs.run_and_report` (in ``session.py``) takes the status URL
and opens its own pooled session for all the calls; :meth:`JobHandle.run_and_report` reuses
the session of a handle from ``ChutesSession.job_from_status_url`` (use it for custom timeouts
or retries).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ConfigurationError
from .models import MAX_RECORDED_DETAIL, Job
from .transfer import acquire_in_thread
from .worker import already_finished, check_result

if TYPE_CHECKING:
    from .job import JobHandle

__all__ = [
    "JobFunction",
    "Outcome",
    "report_outcome",
    "result_object",
    "run_function",
    "run_job",
]

log = logging.getLogger("chutes_jobs")

#: A job function: ``async def fn(*, output_dir: Path, **job_args) -> dict | Any | None``.
JobFunction = Callable[..., Awaitable[Any]]

#: Details longer than this are cut (keeping the end, where a traceback's error is).
MAX_DETAIL_CHARS = 32_000
CANCELLED_DETAIL = "the job function was cancelled"


@attrs.frozen
class Outcome:
    """What a job function's run amounts to: status, result object and detail text."""

    status: str
    result: dict[str, Any] | None = None
    detail: str | None = None


def result_object(value: Any) -> dict[str, Any] | None:
    """The ``result`` to send: a dict as is, None as null, anything else as ``{"result": value}``.

    Raises :class:`ConfigurationError` when the value cannot be sent as strict JSON, or is a
    dict holding the key the library records the outcome under (``OUTCOME_KEY``).
    """
    wrapped = value if value is None or isinstance(value, dict) else {"result": value}
    check_result(wrapped, "the job function's return value")
    return wrapped


def _failure_detail(exc: BaseException) -> str:
    """The exception's first line (what the outcome record keeps), then its traceback."""
    summary = traceback.format_exception_only(exc)[0].strip().splitlines()[0]
    summary = summary[: 2 * MAX_RECORDED_DETAIL]  # the record cuts it further, marking the cut
    return f"{summary}\n\n{_clip(''.join(traceback.format_exception(exc)))}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else "...\n" + text[-MAX_DETAIL_CHARS:]


async def run_function(fn: JobFunction, output_dir: Path, job_args: dict[str, Any]) -> Outcome:
    """Await ``fn(output_dir=..., **job_args)``; turn its value, error or cancellation into an
    :class:`Outcome`. Never raises (a cancellation of the function is an outcome too)."""
    try:
        value = await fn(output_dir=output_dir, **job_args)
    except asyncio.CancelledError:
        log.warning("job function was cancelled")
        return Outcome("cancelled", None, CANCELLED_DETAIL)
    except Exception as exc:
        log.warning("job function failed: %s: %s", type(exc).__name__, exc)
        return Outcome("error", None, _failure_detail(exc))
    try:
        return Outcome("complete", result_object(value), None)
    except ConfigurationError as exc:
        log.warning("job function returned an unsendable value: %s", exc)
        return Outcome("error", None, _clip(f"{exc} (returned a {type(value).__name__})"))


async def run_job(
    handle: JobHandle,
    fn: JobFunction,
    job_args: dict[str, Any],
    *,
    work_dir: Path | None = None,
) -> Job:
    """Run ``fn`` in a fresh output folder, then finish → upload outputs → complete.

    The folder is created under ``work_dir`` (default: the system temp dir) and removed at the
    end. The job is completed whatever the function did. If the task running this was
    cancelled, the outcome is reported as ``"cancelled"`` first and the cancellation re-raised
    afterwards; a second cancellation interrupts the reporting itself.
    """
    make = functools.partial(tempfile.mkdtemp, prefix="chutes-job-", dir=work_dir)
    remove = functools.partial(shutil.rmtree, ignore_errors=True)
    output_dir = Path(await acquire_in_thread(make, remove))  # cancelled: removed anyway
    try:
        outcome = await run_function(fn, output_dir, job_args)
        cancelled = outcome.status == "cancelled" and _uncancel_current_task()
        final = await report_outcome(handle, outcome, output_dir)
    finally:
        await asyncio.to_thread(shutil.rmtree, output_dir, True)
    if cancelled:
        raise asyncio.CancelledError
    return final


def _uncancel_current_task() -> bool:
    """Withdraw a pending cancellation of this task so reporting can run; True if there was one.

    Without it, a timeout expiring while reporting would look like our own cancellation.
    """
    task = asyncio.current_task()
    if task is None or task.cancelling() == 0:
        return False
    task.uncancel()
    return True


async def report_outcome(handle: JobHandle, outcome: Outcome, output_dir: Path | None) -> Job:
    """finish → upload every file of ``output_dir`` → complete; complete runs whatever failed.

    If the outputs cannot be listed (an unsafe name, say), finish is sent without them, the
    reason added to the detail. Upload failures are logged; the server then records the job
    as a partial failure naming the missing files. A finish that fails for good (the retry
    policy spent, say on a server answering 500 every time) is logged and complete still
    runs. A job already finished (a restarted worker whose earlier run completed it) is done:
    complete then returns a :attr:`Job.assumed` snapshot unless the session can read it back.
    """
    try:
        targets = await _finish(handle, outcome, output_dir)
        report = await handle.upload_outputs(targets)
        if not report.ok:
            log.error("job %s: some outputs were not uploaded: %s", handle.id, report)
    except Exception as exc:  # report what we can: complete still closes the job
        if already_finished(exc):
            log.warning("job %s was already finished: this run's outcome is not sent", handle.id)
        else:
            log.error("reporting job %s failed: %s: %s", handle.id, type(exc).__name__, exc)
    return await handle.complete()


async def _finish(handle: JobHandle, outcome: Outcome, output_dir: Path | None) -> Any:
    try:
        return await handle.finish(
            status=outcome.status, result=outcome.result, detail=outcome.detail, outputs=output_dir
        )
    except ConfigurationError as exc:  # nothing was sent: report the failure without outputs
        log.error("job %s: outputs cannot be reported: %s", handle.id, exc)
        detail = "\n".join(filter(None, [outcome.detail, f"outputs not reported: {exc}"]))
        status = "error" if outcome.status == "complete" else outcome.status
        return await handle.finish(status=status, result=outcome.result, detail=detail)
