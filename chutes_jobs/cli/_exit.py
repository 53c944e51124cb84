"""Exit codes, the one-line error message and exit code of each error a command meets, and
what the first Ctrl-C does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
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

#: After the first Ctrl-C, the seconds a command gets to stop cleanly (cancelled tasks finish,
#: files close, a ledger closes) before the process exits anyway. Exiting at any moment is
#: safe: a partial file only ever holds a prefix of its server file, and a bulk ledger records
#: each step durably before taking it.
INTERRUPT_GRACE = 2.0
INTERRUPTED = "interrupted"
INTERRUPTED_DOWNLOAD = (
    "interrupted; partial downloads are kept as .part files and resume when the same download "
    "runs again"
)

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


def run_async(coro: Coroutine[Any, Any, T], interrupted: str = INTERRUPTED_DOWNLOAD) -> T:
    """Run ``coro``; map Ctrl-C and library errors to exit codes and one-line messages.

    The first Ctrl-C cancels ``coro`` and the command exits with 130 and the ``interrupted``
    line once it stopped, or after :data:`INTERRUPT_GRACE` seconds whatever still runs (a
    thread in a long fsync, say); a second Ctrl-C exits at once.
    """
    stop = _Interrupt(interrupted)
    with stop.handling_sigint():
        try:
            result = asyncio.run(stop.guard(coro))
        except BaseException as exc:
            if stop.requested:  # whatever the cancellation ended with
                stop.exit()
            if isinstance(exc, KeyboardInterrupt):
                stop.exit()
            if not isinstance(exc, Exception):
                raise
            code, message = error_exit(exc)
            fail(one_line(message), code)
    if stop.requested:
        stop.exit()
    return result


class _Interrupt:
    """Ctrl-C while a command runs: cancel it, bound the time it takes to stop, say so once."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.requested = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._said = threading.Lock()

    async def guard(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as the task the first Ctrl-C cancels."""
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        if self.requested:  # Ctrl-C came before the loop ran
            coro.close()
            raise asyncio.CancelledError
        return await coro

    def handling_sigint(self) -> Any:
        """A context in which SIGINT calls :meth:`on_sigint` (main thread only); once it did,
        it keeps doing so until the process ends: a second Ctrl-C while exiting exits."""
        return _SigintHandler(self.on_sigint, keep=lambda: self.requested)

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.exit_now()  # the second Ctrl-C
        self.requested = True
        watchdog = threading.Timer(INTERRUPT_GRACE, self.exit_now)
        watchdog.daemon = True
        watchdog.start()
        if self._loop is not None and self._task is not None and not self._task.done():
            self._loop.call_soon_threadsafe(self._task.cancel)

    def say(self) -> None:
        """Print the interrupted line, once whoever asks (the command or the watchdog)."""
        if self._said.acquire(blocking=False):
            if sys.stderr.isatty():
                os.write(2, b"\x1b[?25h")  # a live display hid the cursor
            os.write(2, f"error: {self.message}\n".encode())

    def exit(self) -> NoReturn:
        """The command stopped: print the line, exit 130 (at once: a second Ctrl-C during
        the interpreter's own shutdown would kill it by the signal instead)."""
        self.say()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(EXIT_INTERRUPTED)

    def exit_now(self) -> None:
        """Exit 130 at once, whatever still runs (the grace ran out, or a second Ctrl-C)."""
        self.say()
        os._exit(EXIT_INTERRUPTED)


class _SigintHandler:
    def __init__(self, handler: Any, keep: Callable[[], bool]) -> None:
        self._handler = handler
        self._keep = keep
        self._previous: Any = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None and not self._keep():
            signal.signal(signal.SIGINT, self._previous)


def interrupted_exit(message: str = INTERRUPTED) -> NoReturn:
    """Ctrl-C outside a running command: the one line, exit 130."""
    fail(message, EXIT_INTERRUPTED)
