"""RetryPolicy: what is retried for which call kind, backoff, Retry-After and the deadline."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest

from chutes_jobs import (
    BadRequestError,
    CallKind,
    ConfigurationError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    RetryPolicy,
    TransportError,
)
from chutes_jobs.errors import AnswerTooLargeError, APIStatusError, error_for_status

if TYPE_CHECKING:
    from conftest import FakeTime

URL = "https://api.chutes.ai/jobs/abc"


def status(code: int, detail: str = "x", retry_after: float | None = None) -> APIStatusError:
    return error_for_status(code, detail=detail, method="GET", url=URL, retry_after=retry_after)


CONNECT_FAILED = TransportError("refused", connect_failed=True)
DISCONNECTED = TransportError("server disconnected")
READ_TIMEOUT = RequestTimeoutError("read timed out")
CONNECT_TIMEOUT = RequestTimeoutError("connect timed out", connect_failed=True)
QUOTA = status(429, "Daily job quota exceeded: 100/100")

# (error, retried for READ/IDEMPOTENT/TRANSFER, for CREATE, for DELETE)
DECISIONS = [
    (CONNECT_FAILED, True, True, True),
    (CONNECT_TIMEOUT, True, True, True),
    (DISCONNECTED, True, False, True),
    (READ_TIMEOUT, True, False, True),
    (status(408), True, False, True),
    (status(429, "Too many requests"), True, True, True),
    (QUOTA, False, False, False),
    (status(500), True, False, False),
    (status(502), True, False, False),
    (status(503), True, True, False),
    (status(504), True, False, False),
    (status(400), False, False, False),
    (status(401), False, False, False),
    (status(404), False, False, False),
    (status(422), False, False, False),
    # a 2xx that is not a JSON object: like a 5xx, but a delete sends again (404 = gone)
    (ProtocolError("html", status=200, body_excerpt="<html>"), True, False, True),
    # an answer over the size limit would be as large again: no kind sends it twice
    (AnswerTooLargeError("too large"), False, False, False),
    (ConfigurationError("bad"), False, False, False),
    (ValueError("not ours"), False, False, False),
]


@pytest.mark.parametrize(("error", "idempotent", "create", "delete"), DECISIONS)
def test_should_retry_by_call_kind(
    error: BaseException, idempotent: bool, create: bool, delete: bool
) -> None:
    policy = RetryPolicy()
    for kind in (CallKind.READ, CallKind.IDEMPOTENT, CallKind.TRANSFER):
        assert policy.should_retry(kind, error) is idempotent, kind
    assert policy.should_retry(CallKind.CREATE, error) is create
    assert policy.should_retry(CallKind.DELETE, error) is delete


@pytest.mark.parametrize("kind", list(CallKind))
def test_rate_limits_can_be_left_to_the_caller(kind: CallKind) -> None:
    policy = RetryPolicy(retry_rate_limits=False)
    assert not policy.should_retry(kind, status(429, "Too many requests"))
    assert policy.should_retry(kind, CONNECT_FAILED)


def test_backoff_is_full_jitter_within_exponential_ceiling() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0)
    random.seed(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        draws = [policy.backoff(attempt, None) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # jitter covers the range, not a fixed value


def test_backoff_uses_retry_after_capped() -> None:
    policy = RetryPolicy(retry_after_cap=10.0)
    limited = status(429, "slow down", retry_after=3.0)
    assert policy.backoff(1, limited) == 3.0
    assert policy.backoff(1, status(429, "slow down", retry_after=500.0)) == 10.0
    assert policy.backoff(1, status(503, "busy", retry_after=2.5)) == 2.5


async def test_run_returns_first_success_after_retries(fake_time: FakeTime) -> None:
    outcomes: list[BaseException | str] = [status(502), DISCONNECTED, "ok"]
    seen: list[int] = []

    async def attempt(number: int) -> str:
        seen.append(number)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert await fake_time.policy().run(CallKind.READ, attempt) == "ok"
    assert seen == [1, 2, 3]
    assert len(fake_time.sleeps) == 2


async def test_run_stops_at_max_attempts_and_sets_attempts(fake_time: FakeTime) -> None:
    calls = 0

    async def attempt(_: int) -> None:
        nonlocal calls
        calls += 1
        raise status(500)

    with pytest.raises(APIStatusError) as info:
        await fake_time.policy(max_attempts=3).run(CallKind.READ, attempt)
    assert calls == 3
    assert info.value.attempts == 3
    assert len(fake_time.sleeps) == 2


async def test_run_does_not_retry_create_after_disconnect(fake_time: FakeTime) -> None:
    calls = 0

    async def attempt(_: int) -> None:
        nonlocal calls
        calls += 1
        raise TransportError("server disconnected")

    with pytest.raises(TransportError) as info:
        await fake_time.policy().run(CallKind.CREATE, attempt)
    assert calls == 1
    assert info.value.attempts == 1
    assert fake_time.sleeps == []


async def test_run_honours_retry_after_seconds(fake_time: FakeTime) -> None:
    errors = [status(429, "slow down", retry_after=7.0)]

    async def attempt(_: int) -> str:
        if errors:
            raise errors.pop()
        return "done"

    assert await fake_time.policy().run(CallKind.CREATE, attempt) == "done"
    assert fake_time.sleeps == [7.0]


async def test_run_gives_up_when_retry_after_passes_deadline(fake_time: FakeTime) -> None:
    calls = 0

    async def attempt(_: int) -> None:
        nonlocal calls
        calls += 1
        raise status(429, "slow down", retry_after=90.0)

    with pytest.raises(RateLimitError) as info:
        await fake_time.policy(deadline=60.0).run(CallKind.READ, attempt)
    assert calls == 1
    assert fake_time.sleeps == []  # did not sleep past the deadline
    assert info.value.retry_after == 90.0


async def test_run_respects_total_deadline(fake_time: FakeTime) -> None:
    started = fake_time.now
    starts: list[float] = []

    async def attempt(_: int) -> None:
        starts.append(fake_time.now - started)
        fake_time.now += 4.0  # each attempt takes 4 s
        raise status(503)

    policy = fake_time.policy(max_attempts=100, initial_backoff=2.0, max_backoff=2.0, deadline=20.0)
    with pytest.raises(APIStatusError) as info:
        await policy.run(CallKind.READ, attempt)
    # No retry starts once the budget is spent, and no sleep runs past it.
    assert all(start < 20.0 for start in starts)
    assert starts[-1] + 4.0 >= 20.0 - 2.0  # it kept trying until the budget ran out
    assert info.value.attempts == len(starts) < 100


async def test_run_without_deadline_uses_all_attempts(fake_time: FakeTime) -> None:
    async def attempt(_: int) -> None:
        fake_time.now += 1000.0
        raise status(503)

    with pytest.raises(APIStatusError) as info:
        await fake_time.policy(max_attempts=4, deadline=None).run(CallKind.READ, attempt)
    assert info.value.attempts == 4


async def test_run_passes_foreign_errors_through_untouched(fake_time: FakeTime) -> None:
    calls = 0

    async def attempt(_: int) -> None:
        nonlocal calls
        calls += 1
        raise KeyError("bug in caller")

    with pytest.raises(KeyError):
        await fake_time.policy().run(CallKind.READ, attempt)
    assert calls == 1


async def test_run_never_retries_cancellation(fake_time: FakeTime) -> None:
    calls = 0

    async def attempt(_: int) -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await fake_time.policy().run(CallKind.READ, attempt)
    assert calls == 1


async def test_run_does_not_retry_client_errors(fake_time: FakeTime) -> None:
    for error in (status(400), status(404)):
        calls = 0

        async def attempt(_: int, error: APIStatusError = error) -> None:
            nonlocal calls
            calls += 1
            raise error

        with pytest.raises((BadRequestError, NotFoundError)):
            await fake_time.policy().run(CallKind.READ, attempt)
        assert calls == 1
