"""How often a job is polled, and the one poll loop (:func:`poll_job`).

:meth:`JobHandle.watch` / :meth:`JobHandle.wait` and a ``submit_many`` run's followers all poll
through :func:`poll_job`, so they decide "changed" (and so how fast to poll) the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable

import attrs

from .errors import JobTimeoutError
from .models import Job

__all__ = ["PollPolicy", "changed", "poll_job"]


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


def changed(job: Job, previous: Job | None) -> bool:
    """Whether anything in ``job`` differs from ``previous`` (outputs listed, state, status...)
    but ``last_queried_at``, which changes on every read."""
    return previous is None or attrs.evolve(job, last_queried_at=None) != attrs.evolve(
        previous, last_queried_at=None
    )


async def poll_job(
    fetch: Callable[[], Awaitable[Job]],
    *,
    job_id: str,
    policy: PollPolicy | None = None,
    timeout: float | None = None,
    last: Job | None = None,
) -> AsyncGenerator[Job, None]:
    """Yield every snapshot ``fetch()`` returns, polling by ``policy``, until one is finished.

    The finished snapshot is the last one yielded. Raises :class:`JobTimeoutError` (carrying
    the last snapshot seen, ``last`` before any) once ``timeout`` seconds have passed; a
    ``fetch`` under way then is cancelled. A request timeout of ``fetch`` itself is raised as
    it is.
    """
    policy = policy or PollPolicy()
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    previous: Job | None = None
    interval: float | None = None
    while True:
        try:
            job = await _before(deadline, fetch)
        except _DeadlinePassed as passed:
            raise JobTimeoutError(job_id, timeout or 0.0, previous or last) from passed.__cause__
        yield job
        if job.is_finished:
            return
        interval = policy.next_interval(interval, changed=changed(job, previous))
        previous = job
        seconds = policy.jittered(interval)
        if deadline is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise JobTimeoutError(job_id, timeout or 0.0, job)
            seconds = min(seconds, remaining)
        await asyncio.sleep(seconds)


class _DeadlinePassed(Exception):
    pass


async def _before(deadline: float | None, fetch: Callable[[], Awaitable[Job]]) -> Job:
    """``await fetch()``, cut short at ``deadline`` (:class:`_DeadlinePassed`)."""
    if deadline is None:
        return await fetch()
    try:
        async with asyncio.timeout_at(deadline):
            return await fetch()
    except TimeoutError as exc:
        if asyncio.get_running_loop().time() < deadline:
            raise  # a request timeout of the session, not our deadline
        raise _DeadlinePassed from exc
