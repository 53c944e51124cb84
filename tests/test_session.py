"""ChutesSession: what goes on the wire, how answers and failures surface, retries per call kind.

aioresponses pins exactly what is sent; a few tests use a real server on 127.0.0.1 where the
behaviour comes from aiohttp itself (refused connections, read timeouts, dropped bodies).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from bittensor_wallet import Keypair

import chutes_jobs
from chutes_jobs import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    CallKind,
    ChutesSession,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    ValidationError,
)

if TYPE_CHECKING:
    from conftest import FakeTime

BASE = "https://api.chutes.ai"
API_KEY = "cpk_0f1e2d3c4b5a69788796a5b4c3d2e1f0.5c7d9e1f2a3b4c5d6e7f8091a2b3c4d5"
SEED = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyZjBjN2U4ZSIsImlzcyI6ImNodXRlcyJ9.c2VjcmV0LXNpZw"
JOB_ID = "2f0c7e8e-0b43-4c2e-9a55-0d1a4f6f8c11"
JOB_URL = f"{BASE}/jobs/{JOB_ID}"
CREATE_URL = f"{BASE}/jobs/5b1a4c0e-6e2f-5d1b-9b8e-1c2d3e4f5a6b/generate"
JOB = {"job_id": JOB_ID, "finished_at": None, "output_storage_urls": {}}


def sent(http_mock: aioresponses) -> list[tuple[str, yarl.URL, dict[str, Any]]]:
    """Every request aioresponses received, in order: (method, url, kwargs)."""
    calls = [
        (key[0], key[1], call.kwargs) for key, calls in http_mock.requests.items() for call in calls
    ]
    return calls


def sent_headers(http_mock: aioresponses) -> list[dict[str, str]]:
    return [dict(kwargs["headers"]) for _, _, kwargs in sent(http_mock)]


@pytest.fixture
async def api(fake_time: FakeTime) -> AsyncIterator[ChutesSession]:
    async with ChutesSession(api_key=API_KEY, retry_policy=fake_time.policy()) as session:
        yield session


async def read_job(session: ChutesSession) -> Any:
    return await session.request("GET", f"/jobs/{JOB_ID}", kind=CallKind.READ)


async def create_job(session: ChutesSession, body: Any = None) -> Any:
    path = yarl.URL(CREATE_URL).path
    return await session.request("POST", path, kind=CallKind.CREATE, json=body or {"n": 1})


# -- what is sent ---------------------------------------------------------------------------


async def test_api_key_is_sent_as_given_with_user_agent(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.get(JOB_URL, payload=JOB)
    assert await read_job(api) == JOB
    [headers] = sent_headers(http_mock)
    assert headers["Authorization"] == API_KEY
    assert headers["User-Agent"] == f"chutes-jobs/{chutes_jobs.__version__}"
    assert not any(name.startswith("X-Chutes") for name in headers)


async def test_user_id_is_kept_but_never_sent(http_mock: aioresponses) -> None:
    http_mock.get(JOB_URL, payload=JOB)
    async with ChutesSession(api_key=API_KEY, user_id="b9f8c7d6") as session:
        await read_job(session)
        assert session.user_id == "b9f8c7d6"
    [headers] = sent_headers(http_mock)
    assert "b9f8c7d6" not in json.dumps(headers)


async def test_hotkey_signed_create_verifies_over_the_exact_bytes_sent(
    http_mock: aioresponses,
) -> None:
    http_mock.post(CREATE_URL, payload=JOB)
    body = {"prompt": "a lighthouse at dusk, été", "steps": 30, "_disk_gb": 20}
    async with ChutesSession(hotkey=SEED) as session:
        assert await create_job(session, body) == JOB
    [(_, _, kwargs)] = sent(http_mock)
    data, headers = kwargs["data"], kwargs["headers"]
    assert data == json.dumps(body, separators=(",", ":")).encode()
    assert headers["Content-Type"] == "application/json"
    hotkey = headers["X-Chutes-Hotkey"]
    assert hotkey == Keypair.create_from_seed(SEED).ss58_address
    assert abs(int(headers["X-Chutes-Nonce"]) - time.time()) < 5
    assert "Authorization" not in headers
    verifier = Keypair(ss58_address=hotkey)
    signature = bytes.fromhex(headers["X-Chutes-Signature"])
    message = f"{hotkey}:{headers['X-Chutes-Nonce']}:{hashlib.sha256(data).hexdigest()}"
    assert verifier.verify(message, signature)
    tampered = f"{hotkey}:{headers['X-Chutes-Nonce']}:{hashlib.sha256(data + b' ').hexdigest()}"
    assert not verifier.verify(tampered, signature)


async def test_with_both_credentials_create_is_signed_and_reads_use_the_key(
    http_mock: aioresponses,
) -> None:
    http_mock.post(CREATE_URL, payload=JOB)
    http_mock.get(JOB_URL, payload=JOB)
    async with ChutesSession(api_key=API_KEY, hotkey=SEED) as session:
        await create_job(session)
        await read_job(session)
    post, get = sent_headers(http_mock)
    assert "X-Chutes-Signature" in post and "Authorization" not in post
    assert get["Authorization"] == API_KEY and "X-Chutes-Signature" not in get


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_hotkey_only_read_or_delete_is_refused_before_sending(
    method: str, http_mock: aioresponses
) -> None:
    async with ChutesSession(hotkey=SEED) as session:
        with pytest.raises(ConfigurationError, match="API key") as info:
            await session.request(method, f"/jobs/{JOB_ID}", kind=CallKind.READ)
    assert "reject" in str(info.value)
    assert info.value.attempts == 0
    assert sent(http_mock) == []


async def test_user_call_without_credentials_is_refused(http_mock: aioresponses) -> None:
    async with ChutesSession() as session:
        with pytest.raises(ConfigurationError, match="CHUTES_API_KEY"):
            await read_job(session)
    assert sent(http_mock) == []


async def test_worker_call_needs_no_credentials_and_carries_the_token(
    http_mock: aioresponses,
) -> None:
    http_mock.put(f"{JOB_URL}?token={TOKEN}", payload=JOB)
    async with ChutesSession() as session:
        answer = await session.request(
            "PUT", f"/jobs/{JOB_ID}", kind=CallKind.IDEMPOTENT, json={}, auth=False, token=TOKEN
        )
    assert answer == JOB
    [(method, url, kwargs)] = sent(http_mock)
    assert (method, url.query["token"]) == ("PUT", TOKEN)
    assert "Authorization" not in kwargs["headers"]


async def test_timeouts_are_applied_per_request(http_mock: aioresponses) -> None:
    http_mock.get(JOB_URL, payload=JOB)
    session = ChutesSession(api_key=API_KEY, connect_timeout=3, read_timeout=7, request_timeout=30)
    async with session:
        await read_job(session)
    [(_, _, kwargs)] = sent(http_mock)
    assert kwargs["timeout"] == aiohttp.ClientTimeout(total=30, sock_connect=3, sock_read=7)
    assert session.transfer_timeout == aiohttp.ClientTimeout(
        total=None, sock_connect=3, sock_read=7
    )


def test_url_joins_paths_under_base_and_keeps_absolute_urls() -> None:
    session = ChutesSession(base_url="http://127.0.0.1:8000/api/")
    assert str(session.url("/jobs/abc")) == "http://127.0.0.1:8000/api/jobs/abc"
    assert str(session.url("jobs/abc")) == "http://127.0.0.1:8000/api/jobs/abc"
    upload = f"{BASE}/jobs/abc/upload?token={TOKEN}"
    assert str(session.url(upload)) == upload


def test_url_follows_a_reassigned_base_url() -> None:
    session = ChutesSession(base_url="http://127.0.0.1:8000")
    assert str(session.url("/jobs/abc")) == "http://127.0.0.1:8000/jobs/abc"
    assert session.url("/jobs/abc") == session.url("/jobs/abc")  # kept, not re-parsed
    session.base_url = yarl.URL("http://127.0.0.1:9000/v2")
    assert str(session.url("/jobs/abc")) == "http://127.0.0.1:9000/v2/jobs/abc"


@pytest.mark.parametrize(
    "value",
    ["generate", "a.b", "x~y-z_", JOB_ID, "a b", "caf\u00e9", "a%2F", "q?x", "#", "a:b", "+"],
)
def test_segment_quotes_like_urllib(value: str) -> None:
    from urllib.parse import quote

    from chutes_jobs.job import segment

    assert segment(value, "what") == quote(value, safe="")


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "a\x00b", 3, None])
def test_segment_refuses_what_would_reach_another_route(value: Any) -> None:
    from chutes_jobs.job import segment

    with pytest.raises(ConfigurationError, match="what"):
        segment(value, "what")


async def test_insecure_http_is_refused_on_every_call_after_a_loopback_one(
    http_mock: aioresponses,
) -> None:
    http_mock.get("http://127.0.0.1:8000/jobs/x", payload=JOB)
    async with ChutesSession(base_url="http://127.0.0.1:8000", api_key=API_KEY) as session:
        await session.request("GET", "/jobs/x", kind=CallKind.READ)
        for _ in range(2):  # the host's verdict is cached; the refusal is not skipped
            with pytest.raises(ConfigurationError, match=r"plain http to example\.com"):
                await session.request("GET", "http://example.com/jobs/x", kind=CallKind.READ)
            with pytest.raises(ConfigurationError, match=r"plain http to example\.com"):
                async with session.send_once("GET", "http://example.com/jobs/x"):
                    pass
    assert len(sent(http_mock)) == 1


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url", ["http://api.chutes.ai", "http://10.0.0.5:8000", "http://chutes.internal"]
)
def test_credentials_over_plain_http_to_a_remote_host_are_refused(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        ChutesSession(base_url=base_url, api_key=API_KEY)
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        ChutesSession(base_url=base_url, hotkey=SEED)
    allowed = ChutesSession(base_url=base_url, api_key=API_KEY, allow_insecure_http=True)
    assert str(allowed.base_url) == base_url


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8000", "http://127.3.4.5", "http://localhost:9000", "http://[::1]:8000"],
)
def test_plain_http_to_loopback_is_allowed(base_url: str) -> None:
    assert ChutesSession(base_url=base_url, api_key=API_KEY).base_url == yarl.URL(base_url)


def test_plain_http_without_credentials_is_allowed() -> None:
    assert ChutesSession(base_url="http://10.0.0.5:8000").auth_kind == "none"


async def test_token_over_plain_http_to_a_remote_host_is_refused(http_mock: aioresponses) -> None:
    async with ChutesSession(base_url="http://10.0.0.5:8000") as session:
        with pytest.raises(ConfigurationError, match="job token"):
            await session.request(
                "PUT", f"/jobs/{JOB_ID}", kind=CallKind.IDEMPOTENT, auth=False, token=TOKEN
            )
    assert sent(http_mock) == []


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        ChutesSession(base_url="ftp://api.chutes.ai")


def test_from_env_reads_settings_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUTES_API_KEY", API_KEY)
    monkeypatch.setenv("CHUTES_BASE_URL", "http://127.0.0.1:8123")
    monkeypatch.setenv("CHUTES_HOTKEY_SEED", SEED)
    monkeypatch.setenv("CHUTES_USER_ID", "b9f8c7d6")
    session = ChutesSession.from_env()
    assert session.base_url == yarl.URL("http://127.0.0.1:8123")
    assert session.auth_kind == "api_key+hotkey"
    assert session.user_id == "b9f8c7d6"
    assert ChutesSession.from_env(base_url=BASE).base_url == yarl.URL(BASE)


def test_from_env_ignores_empty_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHUTES_API_KEY", "CHUTES_BASE_URL", "CHUTES_HOTKEY_SEED", "CHUTES_USER_ID"):
        monkeypatch.setenv(name, "")
    session = ChutesSession.from_env()
    assert (session.base_url, session.auth_kind) == (yarl.URL(BASE), "none")


async def test_wrapped_session_is_used_and_not_closed(http_mock: aioresponses) -> None:
    http_mock.get(JOB_URL, payload=JOB)
    async with aiohttp.ClientSession() as mine:
        async with ChutesSession(api_key=API_KEY, session=mine) as session:
            assert session.http is mine
            await read_job(session)
        assert not mine.closed
    assert len(sent(http_mock)) == 1


async def test_owned_session_is_closed_on_exit() -> None:
    async with ChutesSession(api_key=API_KEY) as session:
        pool = session.http
        assert not pool.closed
    assert pool.closed


# -- answers and errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (418, APIStatusError),
        (422, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
    ],
)
async def test_error_status_maps_to_its_class_with_fastapi_detail(
    status: int, cls: type[APIStatusError], fake_time: FakeTime, http_mock: aioresponses
) -> None:
    http_mock.post(CREATE_URL, status=status, payload={"detail": "Nope, not now"}, repeat=True)
    async with ChutesSession(api_key=API_KEY, retry_policy=fake_time.policy()) as session:
        with pytest.raises(APIStatusError) as info:
            await session.request("POST", CREATE_URL, kind=CallKind.CREATE, json={"n": 1})
    assert type(info.value) is cls
    assert (info.value.status, info.value.detail) == (status, "Nope, not now")
    assert f"HTTP {status}: Nope, not now" in str(info.value)


async def test_fastapi_422_list_is_parsed(api: ChutesSession, http_mock: aioresponses) -> None:
    detail = [
        {"type": "missing", "loc": ["query", "token"], "msg": "Field required", "input": None}
    ]
    http_mock.put(JOB_URL, status=422, payload={"detail": detail})
    with pytest.raises(ValidationError) as info:
        await api.request("PUT", f"/jobs/{JOB_ID}", kind=CallKind.IDEMPOTENT, json={})
    assert info.value.errors == detail
    assert "query.token: Field required" in str(info.value)


async def test_bare_500_text_is_a_server_error_with_that_detail(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.get(
        JOB_URL, status=500, body="Internal Server Error", content_type="text/plain", repeat=True
    )
    with pytest.raises(ServerError) as info:
        await read_job(api)
    assert info.value.detail == "Internal Server Error"
    assert info.value.attempts == 5


HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    + "<!-- padding -->\r\n" * 40
    + "</body>\r\n</html>\r\n"
)


async def test_html_502_is_a_server_error_with_an_excerpt(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.get(JOB_URL, status=502, body=HTML_502, content_type="text/html", repeat=True)
    with pytest.raises(ServerError) as info:
        await read_job(api)
    assert info.value.status == 502
    assert info.value.body_excerpt == HTML_502[:200]
    assert info.value.detail == "502 Bad Gateway (HTML page)"
    assert str(info.value).endswith("HTTP 502: 502 Bad Gateway (HTML page)")


async def test_html_on_200_is_a_protocol_error_once_retries_are_spent(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.get(JOB_URL, status=200, body=HTML_502, content_type="text/html", repeat=True)
    with pytest.raises(ProtocolError, match="expected a JSON object, got an HTML page") as info:
        await read_job(api)
    assert info.value.status == 200
    assert info.value.body_excerpt == HTML_502[:200]
    assert len(sent(http_mock)) == info.value.attempts == 5


async def test_truncated_json_is_a_protocol_error_once_retries_are_spent(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    cut = '{"job_id": "2f0c7e8e-0b43-4c2e-9a55-0d1a4f'
    http_mock.get(JOB_URL, status=200, body=cut, repeat=True)
    with pytest.raises(ProtocolError, match=r"invalid or truncated JSON \(HTTP 200\)") as info:
        await read_job(api)
    assert info.value.body_excerpt.startswith('{"job_id"')
    assert info.value.attempts == 5


async def test_an_unreadable_200_to_a_create_is_not_sent_again(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.post(CREATE_URL, status=200, body="", repeat=True)
    with pytest.raises(ProtocolError, match="got an empty body") as info:
        await create_job(api)
    assert len(sent(http_mock)) == info.value.attempts == 1


async def test_redirect_is_not_followed(api: ChutesSession, http_mock: aioresponses) -> None:
    http_mock.get(JOB_URL, status=307, headers={"Location": f"{JOB_URL}/"})
    with pytest.raises(APIStatusError) as info:
        await read_job(api)
    assert info.value.status == 307
    assert f"{JOB_URL}/" in str(info.value)
    assert [url for _, url, _ in sent(http_mock)] == [yarl.URL(JOB_URL)]


async def test_send_once_yields_the_unread_2xx_response(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.get(
        f"{JOB_URL}/download/f1", body=b"\x00\x01" * 1000, content_type="application/octet-stream"
    )
    async with api.send_once("GET", f"/jobs/{JOB_ID}/download/f1") as response:
        chunks = [chunk async for chunk in response.content.iter_chunked(300)]
    assert b"".join(chunks) == b"\x00\x01" * 1000


async def test_send_once_raises_the_status_error(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.get(
        f"{JOB_URL}/download/f1", status=404, payload={"detail": "Job output file not found"}
    )
    with pytest.raises(NotFoundError, match="Job output file not found"):
        async with api.send_once("GET", f"/jobs/{JOB_ID}/download/f1"):
            pytest.fail("the body must not run for an error status")


# -- retries by call kind -----------------------------------------------------------------------

CONNECT_REFUSED = aiohttp.ClientConnectorError(
    ConnectionKey("api.chutes.ai", 443, True, True, None, None, None),
    OSError(111, "Connection refused"),
)


def failing(http_mock: aioresponses, method: str, url: str, failure: object, **extra: Any) -> None:
    """Register ``failure`` (an exception or a status code) for every request."""
    if isinstance(failure, BaseException):
        http_mock.add(url, method, exception=failure, repeat=True)
    else:
        assert isinstance(failure, int)
        http_mock.add(url, method, status=failure, payload={"detail": "no"}, repeat=True, **extra)


READ_RETRIED = [
    500,
    502,
    503,
    504,
    429,
    408,
    CONNECT_REFUSED,
    aiohttp.ServerDisconnectedError(),
    TimeoutError(),
]


@pytest.mark.parametrize("failure", READ_RETRIED, ids=repr)
async def test_read_is_retried_up_to_max_attempts(
    failure: object, fake_time: FakeTime, http_mock: aioresponses
) -> None:
    failing(http_mock, "GET", JOB_URL, failure)
    async with ChutesSession(api_key=API_KEY, retry_policy=fake_time.policy(max_attempts=4)) as s:
        with pytest.raises((APIStatusError, TransportError)) as info:
            await read_job(s)
    assert len(sent(http_mock)) == 4
    assert info.value.attempts == 4
    assert len(fake_time.sleeps) == 3


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (TimeoutError(), RequestTimeoutError),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), RequestTimeoutError),
        (aiohttp.ServerDisconnectedError(), TransportError),
        (aiohttp.ClientPayloadError("Response payload is not completed"), TransportError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), TransportError),
        (500, ServerError),
        (502, ServerError),
        (400, BadRequestError),
        (404, NotFoundError),
    ],
    ids=repr,
)
async def test_create_is_not_resent_once_it_may_have_reached_the_server(
    failure: object, error: type[Exception], api: ChutesSession, http_mock: aioresponses
) -> None:
    failing(http_mock, "POST", CREATE_URL, failure)
    with pytest.raises(error) as info:
        await create_job(api)
    assert len(sent(http_mock)) == 1
    assert getattr(info.value, "connect_failed", False) is False
    assert info.value.attempts == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "failure",
    [
        CONNECT_REFUSED,
        aiohttp.ConnectionTimeoutError("Connection timeout to host https://api.chutes.ai"),
        429,
        503,
    ],
    ids=repr,
)
async def test_create_is_resent_when_refused_before_acting(
    failure: object, api: ChutesSession, http_mock: aioresponses
) -> None:
    if isinstance(failure, BaseException):
        http_mock.post(CREATE_URL, exception=failure)
    else:
        http_mock.post(CREATE_URL, status=failure, payload={"detail": "try later"})
    http_mock.post(CREATE_URL, payload=JOB)
    assert await create_job(api) == JOB
    assert len(sent(http_mock)) == 2


async def test_quota_429_is_never_retried(api: ChutesSession, http_mock: aioresponses) -> None:
    detail = "Daily job quota exceeded: 100 jobs per day for chute 5b1a4c0e"
    http_mock.post(CREATE_URL, status=429, payload={"detail": detail}, repeat=True)
    with pytest.raises(RateLimitError) as info:
        await create_job(api)
    assert info.value.is_quota
    assert len(sent(http_mock)) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_delete_5xx_is_not_retried(
    status: int, api: ChutesSession, http_mock: aioresponses
) -> None:
    failing(http_mock, "DELETE", JOB_URL, status)
    with pytest.raises(ServerError):
        await api.request("DELETE", f"/jobs/{JOB_ID}", kind=CallKind.DELETE)
    assert len(sent(http_mock)) == 1


async def test_delete_is_retried_on_connection_errors_and_429(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.delete(JOB_URL, exception=aiohttp.ServerDisconnectedError())
    http_mock.delete(JOB_URL, status=429, payload={"detail": "slow down"})
    http_mock.delete(JOB_URL, payload={"deleted": True, "job_id": JOB_ID})
    assert await api.request("DELETE", f"/jobs/{JOB_ID}", kind=CallKind.DELETE) == {
        "deleted": True,
        "job_id": JOB_ID,
    }
    assert len(sent(http_mock)) == 3


async def test_retry_after_seconds_is_honoured(
    api: ChutesSession, fake_time: FakeTime, http_mock: aioresponses
) -> None:
    http_mock.post(CREATE_URL, status=429, payload={"detail": "slow"}, headers={"Retry-After": "7"})
    http_mock.post(CREATE_URL, status=503, payload={"detail": "busy"}, headers={"Retry-After": "2"})
    http_mock.post(CREATE_URL, payload=JOB)
    assert await create_job(api) == JOB
    assert fake_time.sleeps == [7.0, 2.0]


async def test_retry_after_http_date_is_honoured(
    api: ChutesSession, fake_time: FakeTime, http_mock: aioresponses
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    http_mock.get(JOB_URL, status=429, payload={"detail": "slow"}, headers={"Retry-After": when})
    http_mock.get(JOB_URL, payload=JOB)
    assert await read_job(api) == JOB
    [delay] = fake_time.sleeps
    assert 18.0 <= delay <= 20.0


async def test_retry_after_is_capped(fake_time: FakeTime, http_mock: aioresponses) -> None:
    http_mock.get(JOB_URL, status=429, payload={"detail": "slow"}, headers={"Retry-After": "3600"})
    http_mock.get(JOB_URL, payload=JOB)
    policy = fake_time.policy(retry_after_cap=45.0, deadline=None)
    async with ChutesSession(api_key=API_KEY, retry_policy=policy) as session:
        assert await read_job(session) == JOB
    assert fake_time.sleeps == [45.0]


async def test_retry_after_beyond_the_deadline_gives_up(
    fake_time: FakeTime, http_mock: aioresponses
) -> None:
    http_mock.get(JOB_URL, status=503, payload={"detail": "busy"}, headers={"Retry-After": "100"})
    policy = fake_time.policy(deadline=60.0)
    async with ChutesSession(api_key=API_KEY, retry_policy=policy) as session:
        with pytest.raises(ServerError) as info:
            await read_job(session)
    assert info.value.retry_after == 100.0
    assert fake_time.sleeps == []
    assert len(sent(http_mock)) == 1


async def test_rate_limit_error_carries_retry_after(
    api: ChutesSession, http_mock: aioresponses
) -> None:
    http_mock.delete(
        JOB_URL, status=429, payload={"detail": "slow"}, headers={"Retry-After": "4"}, repeat=True
    )
    with pytest.raises(RateLimitError) as info:
        await api.request("DELETE", f"/jobs/{JOB_ID}", kind=CallKind.DELETE)
    assert info.value.retry_after == 4.0
    assert info.value.attempts == 5


# -- real loopback: what aiohttp itself raises ----------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[str, list[str]]]]]:
    """Start a loopback server with one catch-all handler; yields (base_url, hits)."""
    servers: list[TestServer] = []

    async def start(handler: Handler) -> tuple[str, list[str]]:
        hits: list[str] = []

        async def counted(request: web.Request) -> web.StreamResponse:
            hits.append(request.method)
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", counted)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/"), hits

    yield start
    for server in servers:
        await server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connection_is_connect_failed_and_create_is_resent(
    fake_time: FakeTime,
) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    policy = fake_time.policy(max_attempts=3)
    async with ChutesSession(base_url=base, api_key=API_KEY, retry_policy=policy) as session:
        with pytest.raises(TransportError) as info:
            await session.request("POST", "/jobs/c/m", kind=CallKind.CREATE, json={})
    assert info.value.connect_failed
    assert info.value.attempts == 3


async def test_read_timeout_is_not_resent_for_create_but_is_for_read(
    serve: Any, fake_time: FakeTime
) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response(JOB)

    base, hits = await serve(slow)
    policy = fake_time.policy(max_attempts=2)
    session = ChutesSession(base_url=base, api_key=API_KEY, read_timeout=0.2, retry_policy=policy)
    async with session:
        with pytest.raises(RequestTimeoutError) as info:
            await session.request("POST", "/jobs/c/m", kind=CallKind.CREATE, json={})
        assert not info.value.connect_failed
        assert hits == ["POST"]
        with pytest.raises(RequestTimeoutError):
            await session.request("GET", f"/jobs/{JOB_ID}", kind=CallKind.READ)
        assert hits == ["POST", "GET", "GET"]


async def test_server_disconnect_is_a_transport_error_and_create_is_not_resent(
    serve: Any, fake_time: FakeTime
) -> None:
    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.json_response(JOB)

    base, hits = await serve(hang_up)
    async with ChutesSession(base_url=base, api_key=API_KEY, retry_policy=fake_time.policy()) as s:
        with pytest.raises(TransportError) as info:
            await s.request("POST", "/jobs/c/m", kind=CallKind.CREATE, json={})
    assert not info.value.connect_failed
    assert hits == ["POST"]


async def test_body_cut_short_while_streaming_is_a_transport_error(serve: Any) -> None:
    async def short_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 100)
        assert request.transport is not None
        request.transport.close()
        return response

    base, _ = await serve(short_body)
    async with ChutesSession(base_url=base, api_key=API_KEY) as session:
        with pytest.raises(TransportError) as info:
            async with session.send_once("GET", "/jobs/x/download/f") as response:
                await response.read()
    assert not info.value.connect_failed


async def test_callers_own_errors_inside_send_once_pass_through(serve: Any) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(body=b"data")

    base, _ = await serve(ok)
    async with ChutesSession(base_url=base, api_key=API_KEY) as session:
        with pytest.raises(OSError, match="No space left") as info:
            async with session.send_once("GET", "/jobs/x/download/f"):
                raise OSError(28, "No space left on device")
    assert not isinstance(info.value, TransportError)
