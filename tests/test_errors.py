"""The exception hierarchy: one class per failure a user can tell apart, readable messages."""

from __future__ import annotations

from typing import Any

import pytest

from chutes_jobs import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ChutesError,
    ConfigurationError,
    ConflictError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnsafePathError,
    ValidationError,
)
from chutes_jobs.errors import error_for_status
from chutes_jobs.models import job_from_json

URL = "https://api.chutes.ai/jobs/8c1d6f0e-3a52-4b7e-9f21-6d0b3c9e4a17"


def make(status: int, detail: Any = "x", **extra: Any) -> APIStatusError:
    return error_for_status(status, detail=detail, method="GET", url=URL, **extra)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (599, ServerError),
        (405, APIStatusError),
        (418, APIStatusError),
    ],
)
def test_every_status_has_its_class(status: int, cls: type[APIStatusError]) -> None:
    error = make(status, "Job already finished")
    assert type(error) is cls
    assert isinstance(error, ChutesError)
    assert (error.status, error.detail, error.method, error.url) == (
        status,
        "Job already finished",
        "GET",
        URL,
    )
    assert str(error) == f"GET {URL} -> HTTP {status}: Job already finished"


def test_validation_error_lists_fastapi_entries() -> None:
    detail = [
        {"type": "missing", "loc": ["query", "token"], "msg": "Field required", "input": None},
        {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None},
        "stray",
    ]
    error = make(422, detail)
    assert isinstance(error, ValidationError)
    assert error.errors == detail[:2]
    assert str(error).endswith("query.token: Field required; body.file: Field required; stray")
    assert make(422, "plain text").errors == []


def test_rate_limit_retry_after_and_quota() -> None:
    limited = make(429, "Too many requests", retry_after=12.5)
    assert isinstance(limited, RateLimitError)
    assert limited.retry_after == 12.5 and not limited.is_quota
    quota = make(429, "Daily job quota exceeded: 100 per day")
    assert isinstance(quota, RateLimitError)
    assert quota.is_quota and quota.retry_after is None


def test_server_error_carries_retry_after_of_a_503() -> None:
    busy = make(503, "Service Unavailable", retry_after=30.0)
    assert isinstance(busy, ServerError) and busy.retry_after == 30.0
    failed = make(500, "Internal Server Error")
    assert isinstance(failed, ServerError) and failed.retry_after is None


def test_missing_detail_reads_clearly() -> None:
    assert str(make(500, None)).endswith("HTTP 500: (no detail)")


def test_body_excerpt_is_truncated_to_200_chars() -> None:
    error = make(502, "Bad Gateway", body_excerpt="<html>" + "x" * 1000)
    assert error.body_excerpt == ("<html>" + "x" * 1000)[:200]


def test_protocol_error_shows_status_and_excerpt() -> None:
    error = ProtocolError("expected JSON", status=200, body_excerpt="<!DOCTYPE html>" * 50)
    assert error.status == 200
    assert len(error.body_excerpt) == 200
    assert str(error).startswith("expected JSON (HTTP 200): '<!DOCTYPE html>")


def test_transport_errors_tell_whether_the_request_left() -> None:
    refused = TransportError("could not connect", method="POST", url=URL, connect_failed=True)
    assert refused.connect_failed and refused.method == "POST"
    timeout = RequestTimeoutError("timed out")
    assert isinstance(timeout, TransportError) and isinstance(timeout, TimeoutError)
    assert not timeout.connect_failed


def test_attempts_defaults() -> None:
    assert ConfigurationError("bad").attempts == 0
    assert make(500).attempts == 1
    assert make(500, attempts=4).attempts == 4


def test_errors_that_are_also_builtin_kinds() -> None:
    assert isinstance(ConfigurationError("x"), ValueError)
    assert isinstance(UnsafePathError("../etc/passwd", "escapes the folder"), ValueError)
    assert isinstance(JobTimeoutError("j", 5.0), TimeoutError)


def test_job_outcome_errors_explain_themselves() -> None:
    job = job_from_json(
        {
            "job_id": "8c1d6f0e-3a52-4b7e-9f21-6d0b3c9e4a17",
            "finished_at": "2025-06-01T12:00:00",
            "status": "error",
            "error_detail": "CUDA out of memory",
        }
    )
    failed = JobFailedError(job)
    assert failed.job is job
    assert str(failed) == (
        "job 8c1d6f0e-3a52-4b7e-9f21-6d0b3c9e4a17 finished with status 'error': CUDA out of memory"
    )
    timeout = JobTimeoutError("8c1d6f0e", 90.0)
    assert str(timeout) == "job 8c1d6f0e did not finish within 90 s (it keeps running)"
    unsafe = UnsafePathError("../../.bashrc", "escapes the destination folder")
    assert unsafe.filename == "../../.bashrc"
    assert "'../../.bashrc'" in str(unsafe)
