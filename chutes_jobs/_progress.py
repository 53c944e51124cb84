"""Progress for the command line: rich displays on a terminal, quiet log lines otherwise.

Everything here writes to stderr (or the given stream): stdout stays for results and JSON.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType
from typing import Any, Self, TextIO

from .models import JobState
from .transfer import ProgressCallback, TransferProgress

__all__ = ["BulkDisplay", "ProgressDisplay", "human_size"]

#: Seconds between two log lines about the same file when not on a terminal.
LOG_INTERVAL = 2.0


def human_size(nbytes: float) -> str:
    """``134217728`` -> ``"128.0 MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _transfer_bars(stream: TextIO) -> Any:
    """A started-later rich ``Progress`` with one row per file (imported only on a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
    )


class _TerminalDisplay:
    """A rich display drawn only when its stream is a terminal: started on entry, stopped on
    exit. Subclasses build it in :meth:`_start_live`."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream or sys.stderr
        self._live: Any = None

    def _start_live(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Self:
        if _is_tty(self._stream):
            self._live = self._start_live()
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class ProgressDisplay(_TerminalDisplay):
    """One bar per file on a TTY (rich), else a line per file every few seconds and at the end.

    Use as a context manager and pass :meth:`update` (or :meth:`callback`) as a transfer's
    ``progress``.
    """

    def __init__(self, verb: str = "download", *, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._verb = verb
        self._tasks: dict[str, Any] = {}
        self._last_log: dict[str, float] = {}

    @property
    def is_live(self) -> bool:
        """True while rich bars are shown."""
        return self._live is not None

    def _start_live(self) -> Any:
        return _transfer_bars(self._stream)

    def update(self, progress: TransferProgress, *, label: str | None = None) -> None:
        """Show one progress report (``label`` names the row; default: the filename)."""
        name = label or progress.filename
        if self._live is not None:
            self._update_bar(name, progress)
        else:
            self._log(name, progress)

    def callback(self, prefix: str) -> ProgressCallback:
        """A progress callback whose rows are named ``"{prefix} {filename}"``."""
        return lambda progress: self.update(progress, label=f"{prefix} {progress.filename}")

    def _update_bar(self, name: str, progress: TransferProgress) -> None:
        task = self._tasks.get(name)
        if task is None:
            task = self._live.add_task(name, total=progress.total)
            self._tasks[name] = task
        self._live.update(task, completed=progress.done, total=progress.total)

    def _log(self, name: str, progress: TransferProgress) -> None:
        now = time.monotonic()
        finished = progress.total is not None and progress.done >= progress.total
        last = self._last_log.get(name)
        if last == float("inf"):  # its final line is out
            return
        if not finished and last is not None and now - last < LOG_INTERVAL:
            return
        self._last_log[name] = float("inf") if finished else now
        total = f" of {human_size(progress.total)}" if progress.total is not None else ""
        print(
            f"{self._verb} {name}: {human_size(progress.done)}{total}",
            file=self._stream,
            flush=True,
        )


class BulkDisplay(_TerminalDisplay):
    """Counters of a bulk run (submitted, running, done, failed) and a bar per file downloading.

    On a TTY they are shown live (rich), lines printed on a terminal stdout scroll above
    them; otherwise nothing is drawn. Feed it with :meth:`job_seen` (each job snapshot the
    session receives), :meth:`result_done` (each result) and :meth:`transfer` (the run's
    download progress).
    """

    def __init__(self, *, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._states: dict[str, JobState] = {}
        self._bars: Any = None
        self._transfers: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        #: A shared batch's totals per ledger state (every process's), when known.
        self.batch_counts: dict[str, int] = {}

    def _start_live(self) -> Any:
        from rich.console import Console
        from rich.live import Live

        self._bars = _transfer_bars(self._stream)  # drawn inside the Live below, never started

        return Live(
            self,
            console=Console(file=self._stream),
            refresh_per_second=4,
            redirect_stdout=_is_tty(sys.stdout),
            redirect_stderr=False,
        )

    def __rich__(self) -> Any:
        """The counters line, redrawn by rich (plain text: no number highlighting)."""
        from rich.console import Group
        from rich.text import Text

        counters = Text(self.summary())
        return Group(counters, self._bars) if self._transfers else counters

    def summary(self) -> str:
        """``submitted 3 · running 1 · done 2 · failed 0`` (and a shared batch's totals)."""
        names = ("submitted", "running", "done", "failed")
        mine = " · ".join(f"{name} {self.counts[name]}" for name in names)
        if not self.batch_counts:
            return mine
        batch = " · ".join(f"{name} {n}" for name, n in self.batch_counts.items())
        return f"{mine}\nbatch (every process): {batch}"

    @property
    def is_live(self) -> bool:
        """True while the counters are drawn (stderr is a terminal)."""
        return self._live is not None

    def show_batch(self, counts: dict[str, int]) -> None:
        """Show a shared batch's totals per ledger state, under this process's counters."""
        self.batch_counts = dict(counts)

    def job_seen(self, job_id: str, state: JobState) -> None:
        """A snapshot of a job arrived (its create's answer or a poll)."""
        previous = self._states.get(job_id)
        if previous is None:
            self.counts["submitted"] += 1
        if previous is JobState.RUNNING:
            self.counts["running"] -= 1
        if state is JobState.RUNNING:
            self.counts["running"] += 1
        self._states[job_id] = state

    def result_done(self, job_id: str | None, *, ok: bool) -> None:
        """One input reached its end (``ok`` False for any error)."""
        if job_id is not None:
            self.job_seen(job_id, JobState.FINISHED)  # counts a job resumed from a ledger
        self.counts["done" if ok else "failed"] += 1

    @property
    def transfers(self) -> list[str]:
        """The files with a bar on screen (downloading now)."""
        return list(self._transfers)

    def refresh(self) -> None:
        """Redraw now rather than at the next tick."""
        if self._live is not None:
            self._live.refresh()

    def transfer(self, progress: TransferProgress) -> None:
        """Show a download's progress: one bar per file while it downloads (TTY only)."""
        if self._live is None:
            return  # the result lines say where the files went
        task = self._transfers.get(progress.filename)
        if task is None:
            task = self._bars.add_task(progress.filename, total=progress.total)
            self._transfers[progress.filename] = task
        self._bars.update(task, completed=progress.done, total=progress.total)
        if progress.total is not None and progress.done >= progress.total:
            self._bars.remove_task(self._transfers.pop(progress.filename))
