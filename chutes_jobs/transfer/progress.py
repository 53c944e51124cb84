"""Transfer progress: the snapshots a callback receives, throttled to one per MiB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

__all__ = ["PROGRESS_STEP", "ProgressCallback", "ProgressThrottle", "TransferProgress"]

#: Progress callbacks fire at most once per this many bytes (plus a final call).
PROGRESS_STEP: Final = 1024 * 1024


@attrs.frozen
class TransferProgress:
    """How far one file transfer has got: ``done`` of ``total`` bytes (``None``: unknown)."""

    filename: str
    done: int
    total: int | None


#: Called with each progress snapshot; it runs on the event loop, so it must be quick.
ProgressCallback = Callable[[TransferProgress], None]


class ProgressThrottle:
    """Throttles a :data:`ProgressCallback` to one call per :data:`PROGRESS_STEP` bytes."""

    def __init__(
        self, callback: ProgressCallback | None, filename: str, total: int | None, done: int
    ) -> None:
        self._callback = callback
        self._filename = filename
        self._total = total
        self.done = done
        self._reported = done

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self._callback is not None and self.done - self._reported >= PROGRESS_STEP:
            self._report()

    def finish(self) -> None:
        if self._callback is not None:
            self._report()

    def _report(self) -> None:
        self._reported = self.done
        assert self._callback is not None
        self._callback(TransferProgress(self._filename, self.done, self._total))
