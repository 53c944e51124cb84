"""Credentials as the API takes them now (issue 19): OAuth access tokens (``cak_``) wherever an
API key goes, a 403 for a missing scope, redaction by value of every credential a session
holds, and a base URL that cannot smuggle a query string or fragment."""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from pathlib import Path

import pytest
from aioresponses import aioresponses

from chutes_jobs import (
    ChutesSession,
    ConfigurationError,
    JobOutcome,
    PermissionDeniedError,
    RetryPolicy,
    _redact,
)
from chutes_jobs._redact import REDACTED, redact
from chutes_jobs.auth import ApiKeyAuth
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.auth import SCOPE_READ
from chutes_jobs.polling import PollPolicy

FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
NO_RETRY = RetryPolicy(max_attempts=1)
NO_PERMISSION = "Token does not have permission for this resource"


def _everything_seen(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """Every text a user could see: the error, its traceback, its fields, the log records."""
    fields = [str(getattr(error, name, "")) for name in ("url", "body_excerpt", "detail")]
    records = [record.getMessage() for record in caplog.records]
    return "\n".join([*traceback.format_exception(error), *fields, *records])


async def test_an_oauth_token_drives_a_whole_job(chutes_emulator: Emulator, tmp_path: Path) -> None:
    token = chutes_emulator.add_oauth_token()
    async with ChutesSession(base_url=chutes_emulator.base_url, api_key=token) as session:
        handle = await session.create_job("demo", "files", {"count": 1})
        job = await handle.wait(poll=FAST_POLL)
        assert job.outcome is JobOutcome.SUCCEEDED
        paths = await handle.download_outputs(tmp_path)
        assert sorted(paths) == ["file_000.bin"]
        await handle.delete()
    assert handle.id not in chutes_emulator.store.jobs


async def test_an_oauth_token_from_the_environment(
    chutes_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHUTES_API_KEY", chutes_emulator.add_oauth_token())
    monkeypatch.setenv("CHUTES_BASE_URL", chutes_emulator.base_url)
    async with ChutesSession.from_env() as session:
        assert session.auth_kind == "api_key"
        handle = await session.create_job("demo", "echo", {"x": 1})
        assert (await handle.wait(poll=FAST_POLL)).result == {
            "x": 1,
            "chutes_jobs": {"status": "complete"},
        }


async def test_a_missing_scope_is_403_and_the_token_never_shows(
    chutes_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    token = chutes_emulator.add_oauth_token([SCOPE_READ])
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with ChutesSession(
        base_url=chutes_emulator.base_url, api_key=token, retry_policy=NO_RETRY
    ) as session:
        with pytest.raises(PermissionDeniedError) as caught:
            await session.create_job("demo", "echo")
        assert repr(session).count("cak_") == 0
    error = caught.value
    assert (error.status, error.detail) == (403, NO_PERMISSION)
    assert NO_PERMISSION in str(error)
    assert chutes_emulator.store.jobs == {}  # nothing was created
    seen = _everything_seen(error, caplog)
    assert token not in seen and token[4:20] not in seen
    assert repr(ApiKeyAuth(token)) == f"ApiKeyAuth(key={REDACTED})"


def test_oauth_tokens_are_masked_by_shape_too() -> None:
    """A ``cak_`` token no session holds (say, read from a config file) is masked as well."""
    stray = "cak_" + uuid.uuid4().hex + "Zq-_.9"
    masked = redact(f"Authorization: {stray} and Bearer {stray}")
    assert stray not in masked and f"cak_{REDACTED}" in masked


@pytest.mark.parametrize(
    "credential",
    [
        "proxy-credential-" + uuid.uuid4().hex,  # any shape at all: masked by value
        "cpk_" + uuid.uuid4().hex,
        "cak_" + uuid.uuid4().hex,
    ],
)
async def test_a_credential_echoed_by_the_server_is_masked_by_value(
    credential: str, http_mock: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    """Servers and proxies sometimes echo what they refuse: the error and logs never do."""
    base = "https://api.chutes.ai"
    http_mock.get(
        re.compile(r".*/jobs/j1$"),
        status=401,
        payload={"detail": f"Invalid token: {credential} (user not found)"},
    )
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with ChutesSession(base_url=base, api_key=credential, retry_policy=NO_RETRY) as s:
        with pytest.raises(Exception) as caught:
            await s.job("j1").refresh()
        logging.getLogger("chutes_jobs").warning("a library log line holding %s", credential)
    seen = _everything_seen(caught.value, caplog)
    assert "Invalid token:" in seen and "(user not found)" in seen
    assert credential not in seen
    assert credential[4:30] not in seen


@pytest.mark.parametrize(
    "token",
    [
        f"eyJ{uuid.uuid4().hex}.eyJ{uuid.uuid4().hex}.{uuid.uuid4().hex}",  # a JWT: by shape
        f"opaque-worker-token-{uuid.uuid4().hex}",  # anything else: by value
    ],
)
async def test_a_worker_token_echoed_without_token_equals_is_masked(
    token: str, http_mock: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    base = "https://api.chutes.ai"
    http_mock.post(
        re.compile(r".*/jobs/j1\?.*"), status=401, payload={"detail": f"Missing JWT {token}"}
    )
    caplog.set_level(logging.DEBUG, logger="chutes_jobs")
    async with ChutesSession(base_url=base, retry_policy=NO_RETRY) as session:
        worker = session.job_from_status_url(f"{base}/jobs/j1?token={token}")
        with pytest.raises(Exception) as caught:
            await worker.finish()
    seen = _everything_seen(caught.value, caplog)
    assert "Missing JWT" in seen and token not in seen


def test_the_oldest_values_make_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redact, "MAX_SECRETS", 3)
    values = [f"value-{i}-{uuid.uuid4().hex}" for i in range(5)]
    for value in values:
        _redact.register_secret(value)
    masked = redact(" ".join(values))
    assert masked.split() == values[:2] + [REDACTED] * 3
    overlapping = f"{values[4]}-and-more"
    _redact.register_secret(overlapping)  # the longer value is masked whole
    assert redact(f"<{overlapping}>") == f"<{REDACTED}>"


def test_a_hotkey_seed_is_masked_by_value() -> None:
    seed = uuid.uuid4().hex + uuid.uuid4().hex
    ChutesSession(hotkey=seed)
    assert seed not in redact(f"seed 0x{seed} leaked")


@pytest.mark.parametrize(
    ("base_url", "what", "secret"),
    [
        ("https://api.chutes.ai/?x=1", "query string", "x=1"),
        ("https://api.chutes.ai?api_key=s3cr3t-value", "query string", "s3cr3t-value"),
        ("https://api.chutes.ai/#frag-s3cr3t", "fragment", "frag-s3cr3t"),
        ("https://api.chutes.ai/base?", "query string", "?"),
        ("https://user:pa55w0rd-s3cr3t@api.chutes.ai", "user info", "pa55w0rd-s3cr3t"),
    ],
)
def test_a_base_url_with_a_query_or_fragment_is_refused(
    base_url: str, what: str, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=what) as caught:
        ChutesSession(base_url=base_url)
    assert secret not in str(caught.value)
    assert "https://api.chutes.ai/" in str(caught.value)
    monkeypatch.setenv("CHUTES_BASE_URL", base_url)
    with pytest.raises(ConfigurationError, match=what):
        ChutesSession.from_env()


def test_a_base_url_of_another_scheme_is_refused_without_its_secrets() -> None:
    with pytest.raises(ConfigurationError, match=r"http\(s\) URL") as caught:
        ChutesSession(base_url="ftp://user:pw-s3cr3t@api.chutes.ai/x?k=q-s3cr3t#f-s3cr3t")
    assert "s3cr3t" not in str(caught.value) and "ftp://api.chutes.ai/x" in str(caught.value)


def test_a_plain_base_url_is_kept() -> None:
    assert str(ChutesSession(base_url="https://api.chutes.ai/v1/").base_url) == (
        "https://api.chutes.ai/v1"
    )


async def test_es256_worker_tokens_are_opaque_to_the_client(tmp_path: Path) -> None:
    """The emulator's local runner works each job through this library's worker API with
    ES256 tokens; nothing in the client reads them."""
    async with Emulator(token_algorithm="ES256", schedule_delay=0.01) as emu:
        assert emu.job_status_url("x").split("token=")[1].startswith("eyJhbGciOiJFUzI1NiIs")
        async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as session:
            handle = await session.create_job("demo", "files", {"count": 2})
            job = await handle.wait(poll=FAST_POLL)
            assert job.outcome is JobOutcome.SUCCEEDED
            paths = await handle.download_outputs(tmp_path)
    assert sorted(paths) == ["file_000.bin", "sub/file_001.bin"]
