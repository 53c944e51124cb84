"""Secrets (API keys, signatures, ``token=`` values) never show in reprs, logs or errors."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import yarl
from aioresponses import aioresponses
from multidict import CIMultiDict, CIMultiDictProxy

from chutes_jobs import (
    AuthenticationError,
    CallKind,
    ChutesError,
    ChutesSession,
    ProtocolError,
    RequestTimeoutError,
    TransportError,
)
from chutes_jobs._redact import REDACTED, redact, redact_url

if TYPE_CHECKING:
    from conftest import FakeTime

API_KEY = "cpk_0f1e2d3c4b5a69788796a5b4c3d2e1f0.5c7d9e1f2a3b4c5d6e7f8091a2b3c4d5"
SEED = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyZjBjN2U4ZSIsImlzcyI6ImNodXRlcyJ9.c2VjcmV0LXNpZw"
JOB_ID = "2f0c7e8e-0b43-4c2e-9a55-0d1a4f6f8c11"
JOB_URL = f"https://api.chutes.ai/jobs/{JOB_ID}"
TOKEN_URL = f"{JOB_URL}?token={TOKEN}"


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in (API_KEY, SEED, TOKEN, *secrets):
        assert secret not in text
    # not even a recognisable chunk of them
    for secret in (API_KEY, TOKEN):
        assert secret[8:40] not in text


def sent_signatures(http_mock: aioresponses) -> list[str]:
    return [
        call.kwargs["headers"]["X-Chutes-Signature"]
        for calls in http_mock.requests.values()
        for call in calls
        if "X-Chutes-Signature" in call.kwargs["headers"]
    ]


@pytest.fixture
def both(fake_time: FakeTime) -> Iterator[ChutesSession]:
    yield ChutesSession(api_key=API_KEY, hotkey=SEED, retry_policy=fake_time.policy())


def test_redact_masks_tokens_keys_and_bearers() -> None:
    text = f"GET {TOKEN_URL}&x=1 with Authorization: Bearer {TOKEN} and key {API_KEY}"
    masked = redact(text)
    assert_no_secret(masked)
    assert f"token={REDACTED}&x=1" in masked
    assert f"cpk_{REDACTED}" in masked
    assert redact_url(yarl.URL(TOKEN_URL)) == f"{JOB_URL}?token={REDACTED}"


def test_session_repr_shows_base_url_and_auth_kind_only(both: ChutesSession) -> None:
    text = repr(both)
    assert text == "ChutesSession(base_url='https://api.chutes.ai', auth='api_key+hotkey')"
    assert_no_secret(text)


async def test_logs_of_a_retried_signed_token_request_hold_no_secret(
    both: ChutesSession, http_mock: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    http_mock.post(TOKEN_URL, status=502, body="Bad Gateway", content_type="text/plain")
    http_mock.post(TOKEN_URL, exception=aiohttp.ServerDisconnectedError(f"lost {TOKEN_URL}"))
    http_mock.post(TOKEN_URL, payload={"job_id": JOB_ID})
    http_mock.get(JOB_URL, payload={"job_id": JOB_ID})
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with both:
        await both.request(
            "POST",
            f"/jobs/{JOB_ID}",
            kind=CallKind.IDEMPOTENT,
            json={"result": None},
            token=TOKEN,
        )
        await both.request("GET", f"/jobs/{JOB_ID}", kind=CallKind.READ)
    signatures = sent_signatures(http_mock)
    assert len(signatures) == 3  # each attempt signed afresh
    records = [r for r in caplog.records if r.name == "chutes_jobs"]
    assert len([r for r in records if r.levelno == logging.WARNING]) == 2  # one per retry
    assert len([r for r in records if r.levelno == logging.DEBUG]) >= 4  # one per attempt
    for record in records:
        assert_no_secret(record.getMessage(), *signatures)
    assert_no_secret(caplog.text, *signatures)
    assert f"token={REDACTED}" in caplog.text  # the URL is logged, masked


async def test_send_once_logs_at_debug_hold_no_secret(
    both: ChutesSession, http_mock: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    http_mock.get(TOKEN_URL, body=b"data")
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with both, both.send_once("GET", f"/jobs/{JOB_ID}", token=TOKEN) as response:
        await response.read()
    assert f"GET {JOB_URL}?token={REDACTED} -> HTTP 200" in caplog.text
    assert_no_secret(caplog.text)


async def test_no_redaction_work_when_debug_is_off(
    both: ChutesSession,
    http_mock: aioresponses,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redacted: list[object] = []

    def counting_redact_url(url: object) -> str:
        redacted.append(url)
        return redact_url(url)

    monkeypatch.setattr("chutes_jobs.instrumentation.logging_hook.redact_url", counting_redact_url)
    http_mock.post(TOKEN_URL, payload={"job_id": JOB_ID})
    http_mock.get(TOKEN_URL, body=b"data")
    caplog.set_level(logging.INFO, logger="chutes_jobs")
    async with both:
        await both.request(
            "POST", f"/jobs/{JOB_ID}", kind=CallKind.IDEMPOTENT, json={}, token=TOKEN
        )
        async with both.send_once("GET", f"/jobs/{JOB_ID}", token=TOKEN) as response:
            await response.read()
    assert redacted == []  # nothing logged, nothing redacted

    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    http_mock.get(TOKEN_URL, body=b"data")
    async with both, both.send_once("GET", f"/jobs/{JOB_ID}", token=TOKEN) as response:
        await response.read()
    assert redacted  # the same call at DEBUG logs its URL, masked
    assert_no_secret(caplog.text)


def exception_texts(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


async def test_status_error_text_holds_no_secret(
    both: ChutesSession, http_mock: aioresponses
) -> None:
    # A server that echoes what it was given must not make us leak it.
    echo = {"detail": f"Invalid token or user not found: {API_KEY} token={TOKEN}"}
    http_mock.post(TOKEN_URL, status=401, payload=echo)
    async with both:
        with pytest.raises(AuthenticationError) as info:
            await both.request(
                "POST", f"/jobs/{JOB_ID}", kind=CallKind.IDEMPOTENT, json={}, token=TOKEN
            )
    assert_no_secret(exception_texts(info.value), *sent_signatures(http_mock))
    assert info.value.url == f"{JOB_URL}?token={REDACTED}"


@pytest.mark.parametrize(
    "failure",
    [
        aiohttp.ConnectionTimeoutError(f"Connection timeout to host {TOKEN_URL}"),
        aiohttp.ClientPayloadError(f"Response payload is not completed: {TOKEN_URL}"),
        aiohttp.ClientResponseError(
            aiohttp.RequestInfo(
                yarl.URL(TOKEN_URL), "PUT", CIMultiDictProxy(CIMultiDict()), yarl.URL(TOKEN_URL)
            ),
            (),
            status=400,
            message="Got more than 8190 bytes when reading header line",
        ),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_transport_error_text_and_its_cause_hold_no_secret(
    failure: Exception, fake_time: FakeTime, http_mock: aioresponses
) -> None:
    http_mock.put(TOKEN_URL, exception=failure, repeat=True)
    async with ChutesSession(retry_policy=fake_time.policy(max_attempts=2)) as session:
        with pytest.raises(TransportError) as info:
            await session.request(
                "PUT", f"/jobs/{JOB_ID}", kind=CallKind.IDEMPOTENT, auth=False, token=TOKEN
            )
    assert_no_secret(exception_texts(info.value))
    assert info.value.attempts == 2


async def test_protocol_error_text_holds_no_secret(
    fake_time: FakeTime, http_mock: aioresponses
) -> None:
    page = f"<html><body>Sign in again: {TOKEN_URL} ({API_KEY})</body></html>"
    http_mock.get(TOKEN_URL, status=200, body=page, content_type="text/html", repeat=True)
    async with ChutesSession(retry_policy=fake_time.policy()) as session:
        with pytest.raises(ProtocolError) as info:
            await session.request(
                "GET", f"/jobs/{JOB_ID}", kind=CallKind.READ, auth=False, token=TOKEN
            )
    assert_no_secret(exception_texts(info.value))
    assert "Sign in again" in info.value.body_excerpt


def test_error_messages_are_redacted_whatever_builds_them() -> None:
    errors: list[ChutesError] = [
        ChutesError(f"failed {TOKEN_URL} with {API_KEY}"),
        RequestTimeoutError(f"timed out on {TOKEN_URL}", url=TOKEN_URL),
    ]
    for error in errors:
        assert_no_secret(exception_texts(error))


def test_no_secret_in_a_session_built_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUTES_API_KEY", API_KEY)
    monkeypatch.setenv("CHUTES_HOTKEY_SEED", SEED)
    session: Any = ChutesSession.from_env()
    assert_no_secret(repr(session))
    assert_no_secret(repr(vars(session).get("_auth")))
