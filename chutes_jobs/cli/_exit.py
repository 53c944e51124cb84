"""Exit codes, and the one-line error message and exit code of each error a command meets."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import click

from ..errors import (
    ChutesError,
    ConfigurationError,
    DownloadOutputsError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
)
from ..models import OUTCOME_KEY, Job, JobOutcome

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

#: Longest error line printed.
MAX_ERROR_LINE = 500

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """Print one error line on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settle_job_outcome(job: Job) -> None:
    """Exit 1 with the job's failure when its outcome is FAILED; when it is UNKNOWN, say so in
    one line on stderr (the exit code stays 0)."""
    if job.outcome is JobOutcome.FAILED:
        fail(describe_job_failure(job), EXIT_JOB_FAILED)
    if job.outcome is JobOutcome.UNKNOWN:
        click.echo(unknown_outcome_notice(job), err=True)


def unknown_outcome_notice(job: Job) -> str:
    """The one line telling that nothing says how a finished job ended."""
    return (
        f"notice: job {job.job_id} finished, but its outcome is unknown: the server sent no "
        f"status and its result holds no {OUTCOME_KEY!r} record (its worker does not use "
        "chutes-jobs); check its result and outputs"
    )


def one_line(text: str) -> str:
    """``text`` on one line: whitespace collapsed, capped."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_LINE else line[: MAX_ERROR_LINE - 1] + "…"


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (the exception line of a traceback)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def describe_job_failure(job: Job) -> str:
    """``job X failed (status 'error'): RuntimeError: demo failure``."""
    status = f" (status {job.outcome_status!r})" if job.outcome_status else ""
    detail = last_line(job.outcome_detail or "")
    return one_line(f"job {job.job_id} failed{status}" + (f": {detail}" if detail else ""))


def describe_create_not_found(chute: str, method: str, exc: NotFoundError) -> str:
    """What a 404 to a create means: the server names only the chute whatever the cause."""
    return (
        f"chute {chute!r} not found, or it has no job method {method!r} "
        f"(or it is private and not shared with you): HTTP {exc.status}"
    )


def describe_download_failure(group: DownloadOutputsError) -> str:
    """One line naming each file that failed and why."""
    parts = []
    for exc in group.exceptions:
        text = str(exc)
        if isinstance(exc, FileExistsError):
            text = text.replace("pass overwrite=True", "pass --overwrite")
        parts.append(text)
    return f"{group.message}: " + "; ".join(parts)


def error_exit(exc: Exception) -> tuple[int, str]:
    """The exit code and one-line message for an error raised by a command."""
    if isinstance(exc, JobFailedError):
        return EXIT_JOB_FAILED, describe_job_failure(exc.job)
    if isinstance(exc, JobTimeoutError):
        return EXIT_TIMEOUT, str(exc)
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, DownloadOutputsError):
        return EXIT_API_ERROR, describe_download_failure(exc)
    if isinstance(exc, ChutesError | OSError):
        return EXIT_API_ERROR, str(exc) or type(exc).__name__
    raise exc  # a bug: let its traceback show


def run_async(
    coro: Coroutine[Any, Any, T],
    interrupted: str = "interrupted; partial downloads are kept as .part files and resume "
    "when the same download runs again",
) -> T:
    """Run ``coro``; map Ctrl-C and library errors to exit codes and one-line messages."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        fail(interrupted, EXIT_INTERRUPTED)
    except Exception as exc:
        code, message = error_exit(exc)
        fail(one_line(message), code)
