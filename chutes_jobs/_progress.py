"""Progress display for the command line: rich bars on a terminal, quiet log lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Self, TextIO

from .transfer import TransferProgress

__all__ = ["ProgressDisplay"]

#: Seconds between two log lines about the same file when not on a terminal.
LOG_INTERVAL = 2.0


class ProgressDisplay:
    """One bar per file on a TTY (rich), else a line per file every few seconds and at the end.

    Use as a context manager and pass :meth:`update` as a transfer's ``progress`` callback.
    """

    def __init__(self, verb: str = "download", *, stream: TextIO | None = None) -> None:
        self._verb = verb
        self._stream = stream or sys.stderr
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}
        self._last_log: dict[str, float] = {}

    def __enter__(self) -> Self:
        if self._stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self._stream),
            )
            self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()

    def update(self, progress: TransferProgress) -> None:
        """Show one progress report."""
        if self._bars is not None:
            self._update_bar(progress)
        else:
            self._log(progress)

    def _update_bar(self, progress: TransferProgress) -> None:
        task = self._tasks.get(progress.filename)
        if task is None:
            task = self._bars.add_task(progress.filename, total=progress.total)
            self._tasks[progress.filename] = task
        self._bars.update(task, completed=progress.done, total=progress.total)

    def _log(self, progress: TransferProgress) -> None:
        now = time.monotonic()
        finished = progress.total is not None and progress.done >= progress.total
        last = self._last_log.get(progress.filename)
        if not finished and last is not None and now - last < LOG_INTERVAL:
            return
        if finished and last == float("inf"):
            return
        self._last_log[progress.filename] = float("inf") if finished else now
        total = f"/{progress.total}" if progress.total is not None else ""
        print(
            f"{self._verb} {progress.filename}: {progress.done}{total} bytes",
            file=self._stream,
            flush=True,
        )
