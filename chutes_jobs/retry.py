"""Retries by safety: which failures are retried for which kind of call, and how long to wait.

A call is retried only when sending it again cannot do harm. Reads, deletes, transfers and the
worker's finish/complete calls are idempotent; a create is billed and has no idempotency key, so
it is re-sent only when the request provably never reached the server (the connection could not
be established) or the server refused it before acting (429 that is not a quota, 503). That
rule is :func:`create_may_have_acted`, which ``submit_many`` also asks when it records a failed
create as ``unknown``. An answer that would fail the same way again (one over the answer-size
limit, :class:`~chutes_jobs.errors.AnswerTooLargeError`) is never retried.

A long transfer passes ``progress`` to :meth:`RetryPolicy.run`: every attempt that gets further
than the ones before renews the budget (attempt count and deadline), so a multi-GB download over
a link that drops now and then still arrives, and a failure at the same spot still ends.

Waits are exponential with full jitter, ``uniform(0, min(max_backoff, initial * 2**(n-1)))``;
a server's ``Retry-After`` (on a 429 or 503) replaces that wait, capped by ``retry_after_cap``.
``deadline`` bounds the whole loop: a retry whose wait would end past it is not made, and the
last error is raised instead of sleeping in vain.

Note that aiohttp (3.14) itself re-sends an idempotent request (GET, PUT, DELETE) once when a
kept-alive connection closes before the answer arrives. Such a hidden re-send is not counted in
:attr:`~chutes_jobs.ChutesError.attempts`, and callers must treat answers such as ``404`` on a
delete or ``400 Job already finished`` on complete alike on every attempt.

This policy is written here rather than with ``stamina``: stamina cannot tell a create from a
read by itself (the decision needs the call kind, not only the exception), a backoff returned
from its ``on=`` hook to honour ``Retry-After`` skips its cap and jitter, and its default log
line includes the call's arguments, which here are credentials.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TYPE_CHECKING, TypeVar

import attrs

from .errors import (
    AnswerTooLargeError,
    APIStatusError,
    ChutesError,
    ConfigurationError,
    RateLimitError,
    ServerError,
    TransportError,
)
from .instrumentation.scopes import notify_retry

if TYPE_CHECKING:
    from .instrumentation.hooks import HookSet

__all__ = ["CallKind", "RetryPolicy", "create_may_have_acted", "parse_retry_after"]

T = TypeVar("T")

_REQUEST_TIMEOUT = 408
_SERVICE_UNAVAILABLE = 503


class CallKind(enum.Enum):
    """What a call does, which decides what is safe to retry."""

    #: GET a job: connection errors, timeouts, 408, 429 and 5xx are retried.
    READ = "read"
    #: POST a new job (billed, not idempotent): retried only after a failed connect, 429, 503.
    CREATE = "create"
    #: The worker's finish and complete: retried like :attr:`READ`.
    IDEMPOTENT = "idempotent"
    #: DELETE a job: like :attr:`READ` but a 5xx is not retried (a GET settles the outcome).
    DELETE = "delete"
    #: One upload or download attempt: retried like :attr:`READ` (bodies are re-opened).
    TRANSFER = "transfer"


def _is_retryable_rate_limit(error: ChutesError) -> bool:
    return isinstance(error, RateLimitError) and not error.is_quota


def create_may_have_acted(error: BaseException) -> bool:
    """Whether a create that failed with ``error`` may still have created (and billed) a job.

    Not when no connection was made, nor when the server refused before acting: a 4xx (a 429
    included), a 503, or a request refused before sending. A 2xx that could not be read
    (:class:`~chutes_jobs.ProtocolError`), a dropped connection, another 5xx: it may have.
    """
    if isinstance(error, TransportError):
        return not error.connect_failed
    if isinstance(error, ServerError):
        return error.status != _SERVICE_UNAVAILABLE
    return not isinstance(error, APIStatusError | ConfigurationError)


def _create_may_retry(error: ChutesError) -> bool:
    """A create is re-sent only when it provably did not act and trying again may help."""
    if create_may_have_acted(error):
        return False
    return isinstance(error, TransportError | ServerError) or _is_retryable_rate_limit(error)


def _idempotent_may_retry(error: ChutesError, *, server_errors: bool) -> bool:
    if isinstance(error, TransportError):  # includes RequestTimeoutError
        return True
    if _is_retryable_rate_limit(error):
        return True
    if not isinstance(error, APIStatusError):
        return False
    if error.status == _REQUEST_TIMEOUT:
        return True
    return server_errors and error.status >= 500


def _retry_after(error: BaseException) -> float | None:
    """The server's Retry-After in seconds, carried by a 429 or a 503."""
    if isinstance(error, RateLimitError | ServerError):
        return error.retry_after
    return None


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a call is retried.

    The defaults suit production: five attempts, 0.5 s initial backoff doubling up to 30 s
    with full jitter, Retry-After honoured up to 120 s, and a 300 s budget for the whole call.
    Inject ``sleep`` and ``monotonic`` to test without waiting.
    """

    #: Total attempts including the first (1 disables retries).
    max_attempts: int = 5
    #: Upper bound of the first backoff, in seconds; it doubles with every retry.
    initial_backoff: float = 0.5
    #: Cap of one jittered backoff, in seconds.
    max_backoff: float = 30.0
    #: Seconds budget across all attempts and sleeps; ``None`` for no budget.
    deadline: float | None = 300.0
    #: A ``Retry-After`` longer than this is shortened to it.
    retry_after_cap: float = 120.0
    #: Awaited between attempts with the delay in seconds.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: The clock the deadline is measured with.
    monotonic: Callable[[], float] = time.monotonic
    #: Retry a 429 that is not a quota; false when the caller paces rate limits itself
    #: (``submit_many`` pauses all its creates together).
    retry_rate_limits: bool = True

    def should_retry(self, kind: CallKind, error: BaseException) -> bool:
        """Whether a call of this ``kind`` may be sent again after ``error``."""
        if not isinstance(error, ChutesError) or isinstance(error, AnswerTooLargeError):
            return False
        if isinstance(error, RateLimitError) and not self.retry_rate_limits:
            return False
        if kind is CallKind.CREATE:
            return _create_may_retry(error)
        return _idempotent_may_retry(error, server_errors=kind is not CallKind.DELETE)

    def backoff(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The server's Retry-After wins, capped by :attr:`retry_after_cap`; otherwise a full
        jitter draw from ``[0, min(max_backoff, initial_backoff * 2**(attempt-1))]``.
        """
        retry_after = _retry_after(error) if error is not None else None
        if retry_after is not None:
            return max(0.0, min(retry_after, self.retry_after_cap))
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    async def run(
        self,
        kind: CallKind,
        attempt_fn: Callable[[int], Awaitable[T]],
        *,
        progress: Callable[[], Awaitable[int]] | None = None,
        hooks: HookSet | None = None,
    ) -> T:
        """Await ``attempt_fn(1)``, ``attempt_fn(2)``, ... until one succeeds or retrying stops.

        Only :class:`~chutes_jobs.ChutesError` is considered for a retry; the last error is
        re-raised with :attr:`~chutes_jobs.ChutesError.attempts` set (every attempt made).
        Cancellation is never retried. ``progress`` measures how far the work got (bytes
        kept, say): when a failed attempt leaves it higher than ever before, the budget
        (:attr:`max_attempts` and :attr:`deadline`) starts afresh. Each retry is told to
        ``hooks`` (a session's; by default the process-wide ones) as a
        :class:`~chutes_jobs.instrumentation.RetryScheduled` event.
        """
        started = self.monotonic()
        high_water = await progress() if progress is not None else 0
        attempt = failures = 0  # failures: attempts in a row without progress
        while True:
            attempt += 1
            failures += 1
            try:
                return await attempt_fn(attempt)
            except ChutesError as error:
                error.attempts = attempt
                if progress is not None and (reached := await progress()) > high_water:
                    high_water, failures, started = reached, 1, self.monotonic()
                delay = self._delay_before_retry(kind, failures, error, started)
                if delay is None:
                    raise
                notify_retry(hooks, kind.value, failures, self.max_attempts, error, delay)
            await self.sleep(delay)

    def _delay_before_retry(
        self, kind: CallKind, attempt: int, error: ChutesError, started: float
    ) -> float | None:
        """The wait before the next attempt, or ``None`` when the error must be raised."""
        if attempt >= self.max_attempts or not self.should_retry(kind, error):
            return None
        delay = self.backoff(attempt, error)
        if self.deadline is not None:
            remaining = self.deadline - (self.monotonic() - started)
            if delay >= remaining:
                return None
        return delay


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    ``None`` when absent or unreadable; never negative. ``now`` (unix time) is for tests.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
