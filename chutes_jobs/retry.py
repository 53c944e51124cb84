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

A 2xx whose body is not a JSON object (empty, cut short, an HTML page:
:class:`~chutes_jobs.ProtocolError`) is retried like a 5xx for every kind but a create: the
request may be sent again, and the next answer is likely whole. A create's unreadable 2xx may
have created the job, so it is never re-sent (``submit_many`` records it ``unknown``).

Waits are exponential with full jitter, ``uniform(0, min(max_backoff, initial * 2**(n-1)))``;
a server's ``Retry-After`` (on a 429 or 503) replaces that wait, kept within
``[initial_backoff, retry_after_cap]`` (:meth:`RetryPolicy.server_delay`): a zero or a date in
the past cannot make the client spin, and an invalid value counts as absent. ``deadline``
bounds the whole loop: a retry whose wait would end past it is not made, and the last error is
raised instead of sleeping in vain.

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
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from .errors import (
    AnswerTooLargeError,
    APIStatusError,
    ChutesError,
    ConfigurationError,
    ProtocolError,
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

    #: GET a job: connection errors, timeouts, 408, 429, 5xx and an unreadable 2xx are retried.
    READ = "read"
    #: POST a new job (billed, not idempotent): retried only after a failed connect, 429, 503;
    #: never after an unreadable 2xx (the job may exist).
    CREATE = "create"
    #: The worker's finish and complete: retried like :attr:`READ` (a re-sent finish hands out
    #: fresh upload URLs; a re-sent complete answers ``400 Job already finished``, a success).
    IDEMPOTENT = "idempotent"
    #: DELETE a job: like :attr:`READ` but a 5xx is not retried (a GET settles the outcome);
    #: an unreadable 2xx is (a re-sent delete answers 404 once the job is gone).
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
    # An unreadable 2xx (ProtocolError) says nothing the next attempt cannot say better.
    if isinstance(error, TransportError | ProtocolError):  # includes RequestTimeoutError
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
    #: Upper bound of the first backoff, in seconds; it doubles with every retry. Also the
    #: shortest wait a server's ``Retry-After`` can ask for.
    initial_backoff: float = 0.5
    #: Cap of one jittered backoff, in seconds.
    max_backoff: float = 30.0
    #: Seconds budget across all attempts and sleeps; ``None`` for no budget.
    deadline: float | None = 300.0
    #: A ``Retry-After`` longer than this (a far-future date included) is shortened to it.
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

    def server_delay(self, retry_after: float | None) -> float | None:
        """The wait a server's ``Retry-After`` (in seconds) asks of this policy, or ``None``.

        Within ``[initial_backoff, retry_after_cap]``: zero or a past date (``0.0``) still waits
        :attr:`initial_backoff`, so a broken server cannot turn the client into a tight loop;
        a far-future one (``inf`` included) waits :attr:`retry_after_cap`. ``None`` when absent
        or invalid (negative, NaN): the jittered backoff applies then. The retry loop and
        ``submit_many``'s shared rate gate both wait by this rule.
        """
        if retry_after is None or math.isnan(retry_after) or retry_after < 0:
            return None
        floor = min(self.initial_backoff, self.retry_after_cap)
        return min(max(retry_after, floor), self.retry_after_cap)

    def backoff(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The server's Retry-After wins, as :meth:`server_delay` bounds it; otherwise a full
        jitter draw from ``[0, min(max_backoff, initial_backoff * 2**(attempt-1))]``.
        """
        delay = self.server_delay(_retry_after(error) if error is not None else None)
        if delay is not None:
            return delay
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


#: delay-seconds: digits, and (beyond RFC 9110, as some servers send) a decimal fraction.
_DELAY_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
#: The two-digit year of an obsolete RFC 850 date (``Sunday, 06-Nov-94 08:49:37 GMT``).
_RFC850_YEAR: Final = re.compile(r"[A-Za-z]+,\s*\d{1,2}-[A-Za-z]{3}-(\d{2})\s")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    delay-seconds may carry a fraction (``"1.5"``). An HTTP-date may take any of RFC 9110's
    three forms (IMF-fixdate, obsolete RFC 850, asctime); one in the past gives ``0.0``.
    ``None`` when absent or invalid (negative, non-numeric, an impossible date): the value is
    then treated as if it had not been sent. Never negative; ``inf`` for a number too large
    to represent. ``now`` (unix time) is for tests. :meth:`RetryPolicy.server_delay` decides
    how long to actually wait.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    current = time.time() if now is None else now
    when = _http_date(value, current)
    return None if when is None else max(0.0, when - current)


def _http_date(value: str, now: float) -> float | None:
    """An HTTP-date as unix time, or ``None``; :func:`email.utils.parsedate_to_datetime` reads
    all three forms, with two gaps filled here: a date without a zone (asctime) is GMT, and an
    RFC 850 two-digit year follows RFC 9110's rule, not the POSIX pivot (69 -> 1969)."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime has no zone; "-0000" means unknown: an HTTP-date is GMT
        when = when.replace(tzinfo=UTC)
    two_digits = _RFC850_YEAR.match(value)
    if two_digits is not None:
        try:
            when = when.replace(year=_rfc850_year(int(two_digits.group(1)), now))
        except ValueError:  # 29 February of a year without one
            return None
    return when.timestamp()


def _rfc850_year(yy: int, now: float) -> int:
    """RFC 9110 5.6.7: a two-digit year more than 50 years ahead is the latest past one."""
    this_year = datetime.fromtimestamp(now, UTC).year
    year = this_year - this_year % 100 + yy
    return year - 100 if year > this_year + 50 else year
