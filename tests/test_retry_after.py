"""``Retry-After``: what a server may send, what the client waits (retry loop and bulk rate gate).

Invalid values (negative, non-numeric, garbage, impossible dates) count as absent, so the
jittered backoff applies; zero and past dates wait at least the policy's ``initial_backoff``;
far-future values wait ``retry_after_cap``.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chutes_jobs import ChutesSession, RateLimitError, RetryPolicy
from chutes_jobs.bulk import BulkOutcome, RateGate
from chutes_jobs.emulator import Emulator
from chutes_jobs.errors import error_for_status
from chutes_jobs.retry import parse_retry_after

if TYPE_CHECKING:
    from conftest import FakeTime

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def seconds_to(*when: int) -> float:
    return (datetime(*when, tzinfo=UTC) - NOW).total_seconds()


FUZZ = settings(derandomize=True, max_examples=400, database=None, deadline=None)


def imf(when: datetime) -> str:
    """IMF-fixdate, the preferred form: ``Thu, 01 Jan 2026 12:00:30 GMT``."""
    return format_datetime(when, usegmt=True)


def rfc850(when: datetime) -> str:
    """The obsolete RFC 850 form: ``Thursday, 01-Jan-26 12:00:30 GMT``."""
    return when.strftime("%A, %d-%b-%y %H:%M:%S GMT")


def asctime(when: datetime) -> str:
    """C's asctime() form, without a zone: ``Thu Jan  1 12:00:30 2026``."""
    return f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"


LATER = NOW + timedelta(seconds=30)
EARLIER = NOW - timedelta(hours=1)

#: (header value, seconds parse_retry_after gives at NOW)
REAL_WORLD: list[tuple[str | None, float | None]] = [
    # delay-seconds
    ("120", 120.0),
    ("0", 0.0),
    ("  30 ", 30.0),
    ("1.5", 1.5),  # fractional: not RFC 9110, sent by some servers
    ("86400", 86400.0),  # far future: the policy caps it
    ("9" * 400, math.inf),  # too large to represent: far future
    # HTTP-dates, all three forms of RFC 9110
    (imf(LATER), 30.0),
    (rfc850(LATER), 30.0),
    (asctime(LATER), 30.0),
    (imf(EARLIER), 0.0),  # past: now
    (rfc850(EARLIER), 0.0),
    (asctime(EARLIER), 0.0),
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ("Fri, 31 Dec 9999 23:59:59 GMT", seconds_to(9999, 12, 31, 23, 59, 59)),
    ("Thu, 01 Jan 2026 13:00:30 +0100", 30.0),  # a zone other than GMT: still a time
    # RFC 850's two-digit year: more than 50 years ahead means the latest past such year
    ("Friday, 01-Jan-70 00:00:00 GMT", seconds_to(2070, 1, 1)),
    ("Tuesday, 01-Jan-80 00:00:00 GMT", 0.0),  # 2080 is > 50 years ahead: 1980, past
    # invalid: as if absent
    (None, None),
    ("", None),
    ("   ", None),
    ("-5", None),
    ("-0.5", None),
    ("+5", None),
    ("5s", None),
    ("5 seconds", None),
    ("soon", None),
    ("NaN", None),
    ("inf", None),
    ("Infinity", None),
    ("1e3", None),
    ("0x10", None),
    ("1,5", None),
    ("\u0663", None),  # a non-ASCII digit
    ("null", None),
    ("Sun, 32 Nov 2026 08:49:37 GMT", None),  # no such day
    ("Sun, 06 Nov 2026 25:00:00 GMT", None),  # no such hour
    ("2026-01-01T12:00:30Z", None),  # ISO 8601 is not an HTTP-date
]


@pytest.mark.parametrize(("value", "seconds"), REAL_WORLD)
def test_parse_retry_after_real_world_values(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW.timestamp()) == seconds


#: (header value, seconds RetryPolicy() waits: initial_backoff 0.5, retry_after_cap 120)
WAITS: list[tuple[str, float | None]] = [
    ("30", 30.0),
    ("1.5", 1.5),
    ("0", 0.5),  # "retry now" still waits initial_backoff
    ("0.1", 0.5),
    (imf(EARLIER), 0.5),  # a past date: now, but not a tight loop
    ("3600", 120.0),
    ("9" * 400, 120.0),
    ("Fri, 31 Dec 9999 23:59:59 GMT", 120.0),
    ("-5", None),  # invalid: the jittered backoff applies
    ("garbage", None),
]


@pytest.mark.parametrize(("value", "wait"), WAITS)
def test_what_the_policy_waits(value: str, wait: float | None) -> None:
    assert RetryPolicy().server_delay(parse_retry_after(value, now=NOW.timestamp())) == wait


@pytest.mark.parametrize("seconds", [None, -5.0, -math.inf, math.nan])
def test_an_invalid_retry_after_leaves_the_jittered_backoff(seconds: float | None) -> None:
    policy = RetryPolicy()
    error = error_for_status(429, detail="slow", method="GET", url="u", retry_after=seconds)
    random.seed(5)
    draws = [policy.backoff(n, error) for n in (1, 2, 3)]
    random.seed(5)
    assert draws == [policy.backoff(n, None) for n in (1, 2, 3)]


# ----------------------------------------------------------------------------- fuzz

POLICIES = st.builds(
    RetryPolicy,
    initial_backoff=st.floats(0.001, 10),
    retry_after_cap=st.floats(0.001, 1000),
)


#: Header texts: any text, numbers of every shape, and dates of every form (valid or not).
HEADERS = (
    st.text(max_size=60)
    | st.from_regex(r"[-+ ]?[0-9]{1,400}(\.[0-9]{0,20})?", fullmatch=True)
    | st.floats().map(str)
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    | st.from_regex(r"[A-Z][a-z]+, [0-9]{1,2}-[A-Z][a-z]{2}-[0-9]{2} [0-9:]{8} GMT", fullmatch=True)
)


@FUZZ
@given(value=HEADERS, policy=POLICIES)
def test_any_header_text_gives_none_or_a_bounded_finite_wait(
    value: str, policy: RetryPolicy
) -> None:
    seconds = parse_retry_after(value, now=NOW.timestamp())
    assert seconds is None or seconds >= 0
    _assert_bounded(policy, policy.server_delay(seconds))


@FUZZ
@given(seconds=st.floats(allow_nan=True, allow_infinity=True) | st.none(), policy=POLICIES)
def test_any_retry_after_seconds_give_none_or_a_bounded_finite_wait(
    seconds: float | None, policy: RetryPolicy
) -> None:
    _assert_bounded(policy, policy.server_delay(seconds))


@FUZZ
@given(
    when=st.datetimes(
        min_value=datetime(1977, 1, 1), max_value=datetime(2075, 1, 1), timezones=st.just(UTC)
    ),
    form=st.sampled_from([imf, rfc850, asctime]),
)
def test_every_http_date_form_reads_the_same_time(when: Any, form: Any) -> None:
    """Within 49 years of now, so RFC 850's two-digit year is never ambiguous."""
    when = when.replace(microsecond=0)
    expected = max(0.0, (when - NOW).total_seconds())
    assert parse_retry_after(form(when), now=NOW.timestamp()) == expected


def _assert_bounded(policy: RetryPolicy, wait: float | None) -> None:
    if wait is None:
        return
    floor = min(policy.initial_backoff, policy.retry_after_cap)
    assert math.isfinite(wait)
    assert floor <= wait <= policy.retry_after_cap


# ----------------------------------------------------------------------------- over the wire


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})
        yield emulator


async def test_four_429s_with_a_negative_retry_after_back_off_with_jitter(
    emu: Emulator, fake_time: FakeTime
) -> None:
    """The issue's case: ``Retry-After: -5`` four times, then 200. The retries wait the
    policy's jittered backoff, not 0.0 s each."""
    policy = fake_time.policy()
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy) as s:
        handle = await s.create_job("ext", "run")
        emu.faults.add("get", status=429, retry_after="-5", times=4)
        random.seed(13)
        await handle.refresh()
    random.seed(13)
    assert fake_time.sleeps == [policy.backoff(n, None) for n in (1, 2, 3, 4)]
    assert emu.counts["get"] == 5


@pytest.mark.parametrize("header", ["0", imf(EARLIER)])
async def test_a_zero_or_past_retry_after_waits_the_minimum_backoff(
    emu: Emulator, fake_time: FakeTime, header: str
) -> None:
    policy = fake_time.policy()
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy) as s:
        handle = await s.create_job("ext", "run")
        emu.faults.add("get", status=503, retry_after=header, times=4)
        await handle.refresh()
    assert fake_time.sleeps == [policy.initial_backoff] * 4


async def test_a_far_future_retry_after_is_capped_and_the_deadline_still_holds(
    emu: Emulator, fake_time: FakeTime
) -> None:
    policy = fake_time.policy(retry_after_cap=10.0, deadline=25.0)
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy) as s:
        handle = await s.create_job("ext", "run")
        emu.faults.add("get", status=429, retry_after="Fri, 31 Dec 9999 23:59:59 GMT", times=4)
        with pytest.raises(RateLimitError) as info:
            await handle.refresh()
    assert fake_time.sleeps == [10.0, 10.0]  # a third wait would pass the 25 s deadline
    assert info.value.attempts == 3


# ----------------------------------------------------------------------------- bulk rate gate


@pytest.mark.parametrize(
    ("seconds", "pause"), [(0.0, 0.5), (-5.0, None), (None, None), (1e9, 120.0), (3.0, 3.0)]
)
async def test_the_rate_gate_pauses_by_the_same_rule(
    seconds: float | None, pause: float | None
) -> None:
    """A broken server cannot make every submitter pause 0 s; an invalid value is absent."""
    gate, policy = RateGate(), RetryPolicy()
    error = error_for_status(429, detail="slow", method="POST", url="u", retry_after=seconds)
    assert isinstance(error, RateLimitError)
    random.seed(3)
    before = asyncio.get_running_loop().time()
    gate.rate_limited(error, policy)
    random.seed(3)
    expected = pause if pause is not None else policy.backoff(1, None)
    assert gate.resume_at - before == pytest.approx(expected, abs=0.05)
    assert gate.resume_at - before > 0


@pytest.mark.parametrize("header", ["-5", "0", "Thu, 01 Jan 1970 00:00:00 GMT", "garbage"])
async def test_a_bulk_run_never_pauses_for_nothing(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    pauses: list[float] = []
    pause = RateGate.pause

    def recorded(gate: RateGate, seconds: float) -> None:
        pauses.append(seconds)
        pause(gate, seconds)

    monkeypatch.setattr(RateGate, "pause", recorded)
    random.seed(2)
    policy = RetryPolicy(initial_backoff=0.05, max_backoff=0.1)
    emu.faults.add("create", status=429, retry_after=header, times=3)
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy) as s:
        results = [r async for r in s.submit_many("ext", "run", [{"i": i} for i in range(4)])]
    assert [r.outcome for r in results] == [BulkOutcome.SUBMITTED] * 4
    assert len(pauses) == 3 and all(p > 0 for p in pauses)
    if header in ("0", "Thu, 01 Jan 1970 00:00:00 GMT"):
        assert pauses == [policy.initial_backoff] * 3
