"""A ``submit_many`` run's results per outcome, told to the instrumentation hooks."""

from __future__ import annotations

import itertools
import time
from typing import Final

from ..instrumentation.events import BulkCounters
from ..instrumentation.hooks import HookSet, emit
from .result import BulkOutcome

__all__ = ["RunCounters"]

#: Seconds between two ``BulkCounters`` events while results come in.
INTERVAL: Final = 0.25

_runs = itertools.count(1)


class RunCounters:
    """Counts a run's results; hands ``BulkCounters`` to the hooks that take it: at most every
    :data:`INTERVAL` seconds while results come in, when the run's work ends, and once more
    (``final``) when the run is over."""

    def __init__(self, hooks: HookSet) -> None:
        self.hooks = hooks
        self.run = next(_runs)
        #: Results per outcome, keyed by the outcome's value: hashing an enum member is a
        #: Python-level call (``Enum.__hash__``), and this counts every result of a run.
        self.counts = {outcome._value_: 0 for outcome in BulkOutcome}
        self._due = 0.0

    def add(self, outcome: BulkOutcome, taken: int) -> None:
        """One more result of ``outcome``; ``taken`` inputs were read so far."""
        self.counts[outcome._value_] += 1
        if takers := self.hooks.of(BulkCounters):
            now = time.monotonic()
            if now >= self._due:
                self._due = now + INTERVAL
                emit(takers, self.snapshot(taken, final=False))

    def tell(self, taken: int, *, final: bool) -> None:
        """Hand the counters to the hooks now."""
        if takers := self.hooks.of(BulkCounters):
            emit(takers, self.snapshot(taken, final=final))

    def snapshot(self, taken: int, *, final: bool) -> BulkCounters:
        counts, o = self.counts, BulkOutcome
        return BulkCounters(
            self.run, taken, counts[o.SUBMITTED.value], counts[o.FINISHED.value],
            counts[o.FAILED.value], counts[o.DOWNLOADED.value], counts[o.NOT_SUBMITTED.value],
            counts[o.UNKNOWN.value], final,
        )  # fmt: skip
