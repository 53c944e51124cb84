"""``progress=True`` of the downloads: a progress bar where one can be drawn, else nothing.

Drawn with rich (the ``cli`` extra, imported only here and only then) on stderr when it is a
terminal, and in Jupyter when ipywidgets is there (rich draws live in a notebook through it).
Anywhere else, or without rich, ``True`` draws nothing. Every download asking for a bar at the
same time (threads of a blocking session, tasks of a loop) shares one display, a row per file:
a console shows one live display at a time.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ConfigurationError
from .transfer import ProgressCallback, TransferProgress

__all__ = ["progress_option"]


@contextmanager
def progress_option(progress: ProgressCallback | bool | None) -> Iterator[ProgressCallback | None]:
    """The callback a ``progress=`` argument stands for, while the block runs.

    A callable as is; ``True`` a bar's rows (``None`` where none can be drawn); ``None`` or
    ``False`` none. Anything else raises :class:`ConfigurationError`.
    """
    if progress is None or progress is False:
        yield None
    elif progress is True:
        with _BARS.use() as bars:
            yield None if bars is None else _rows(bars)
    elif callable(progress):
        yield progress
    else:
        raise ConfigurationError(
            f"progress must be a callable taking a TransferProgress, True (a progress bar) or "
            f"None, got {progress!r}"
        )


def _rows(bars: Any) -> ProgressCallback:
    """A callback drawing one row per file of one download call."""
    tasks: dict[str, Any] = {}

    def update(progress: TransferProgress) -> None:
        task = tasks.get(progress.filename)
        if task is None:
            task = tasks[progress.filename] = bars.add_task(progress.filename, total=progress.total)
        bars.update(task, completed=progress.done, total=progress.total)

    return update


class _SharedBars:
    """One rich ``Progress``, started by its first user and stopped by its last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bars: Any = None
        self._users = 0

    @contextmanager
    def use(self) -> Iterator[Any]:
        """The shared ``Progress`` while the block runs (None: nothing can be drawn)."""
        with self._lock:
            if self._users == 0:
                self._bars = _new_bars()
                if self._bars is not None:
                    self._bars.start()
            self._users += 1
            bars = self._bars
        try:
            yield bars
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._bars is not None:
                    self._bars.stop()
                    self._bars = None


_BARS = _SharedBars()


def _new_bars() -> Any:
    """A rich ``Progress`` on stderr, or None when rich is missing or it could not be seen."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
    except ImportError:
        return None
    console = Console(stderr=True)
    if not (console.is_terminal or (console.is_jupyter and _has_module("ipywidgets"))):
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
