"""The rate gate every submitter of a ``submit_many`` run shares: 429s pause the whole group,
and a daily-quota 429 stops every further create."""

from __future__ import annotations

import asyncio
import logging

from ..errors import ChutesError, RateLimitError
from ..retry import RetryPolicy

log = logging.getLogger("chutes_jobs")


class RateGate:
    """One pause shared by every submitter: a 429 stops them all until its Retry-After."""

    def __init__(self) -> None:
        self.resume_at = 0.0
        #: 429s in a row without a successful create (drives the backoff without Retry-After).
        self.strikes = 0
        #: The daily-quota 429 that stopped every further create, once one came (or, in a
        #: shared run, the error telling that another process met it).
        self.quota_error: ChutesError | None = None
        #: The latest other 429 (reported for an input refused too many times).
        self.last_rate_limit: RateLimitError | None = None

    def pause(self, seconds: float) -> None:
        """Hold every submitter for ``seconds`` from now (never shortens a longer pause)."""
        now = asyncio.get_running_loop().time()
        self.resume_at = max(self.resume_at, now + seconds)

    @property
    def paused(self) -> bool:
        """Whether a pause is in force now."""
        return self.resume_at > asyncio.get_running_loop().time()

    async def wait(self) -> None:
        """Return once no pause is in force (without suspending when none is)."""
        loop = asyncio.get_running_loop()
        while (remaining := self.resume_at - loop.time()) > 0:
            await asyncio.sleep(remaining)

    def rate_limited(self, exc: RateLimitError, policy: RetryPolicy) -> None:
        """A create got a 429: stop all creates at the daily quota, else pause the group for
        ``policy.backoff``: its Retry-After kept within ``[initial_backoff, retry_after_cap]``
        (:meth:`RetryPolicy.server_delay`, so never 0 s), or the jittered backoff when it has
        none or an invalid one."""
        if exc.is_quota:
            if self.quota_error is None:
                log.warning("daily job quota exhausted: no further inputs are submitted")
                self.quota_error = exc
            return
        self.last_rate_limit = exc
        self.strikes += 1
        pause = policy.backoff(self.strikes, exc)
        log.info("rate limited: every submitter pauses for %.2f s", pause)
        self.pause(pause)

    def created(self) -> None:
        """A create succeeded: the next 429 starts the backoff afresh."""
        self.strikes = 0
