"""How often :meth:`JobHandle.wait` and :meth:`JobHandle.watch` ask the server about a job."""

from __future__ import annotations

import random

import attrs

__all__ = ["PollPolicy"]


@attrs.frozen
class PollPolicy:
    """Adaptive polling: start fast, slow down while nothing changes, speed up on a change.

    The first poll waits ``initial`` seconds; every poll that sees no change multiplies the
    interval by ``factor`` up to ``maximum``; a change resets it to ``initial``. Each sleep is
    spread by ``±jitter`` (a fraction) so many waiters do not poll in lockstep.
    """

    initial: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    maximum: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))
    factor: float = attrs.field(default=1.5, validator=attrs.validators.ge(1))
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0), attrs.validators.lt(1)]
    )

    def next_interval(self, current: float | None, *, changed: bool) -> float:
        """The un-jittered interval after one poll (``current`` is None before the first)."""
        if current is None or changed:
            return min(self.initial, self.maximum)
        return min(current * self.factor, self.maximum)

    def jittered(self, interval: float) -> float:
        """``interval`` spread by the jitter fraction."""
        return interval * random.uniform(1 - self.jitter, 1 + self.jitter)
