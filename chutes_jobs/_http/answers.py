"""What came back: an answer's limits, its error and its JSON.

Both lanes (aiohttp and the HTTP/1.1 pool) hand their answers here, so a status, a body or a
size is judged the same way whichever lane carried it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import yarl

from .._redact import redact_url
from ..errors import AnswerTooLargeError, APIStatusError, ProtocolError, error_for_status
from ..models import Job, job_from_json
from ..retry import parse_retry_after

__all__ = [
    "ERROR_BODY_LIMIT",
    "MAX_ANSWER_BYTES",
    "answer_error",
    "as_job",
    "job_from_answer",
    "json_answer",
    "too_large",
]

#: The largest JSON answer (decoded) either lane accepts. A job's ``result`` is stored as the
#: worker sent it and comes back with every GET (and its ``job_args`` with it), so this stays
#: well above what a job answer holds in practice; over it, the call fails without a retry.
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024
#: How much of an error answer is read to find its ``detail``.
ERROR_BODY_LIMIT: Final = 64 * 1024

_HTML_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def too_large(
    method: str, url: yarl.URL, limit: int, *, decoded: bool = False
) -> AnswerTooLargeError:
    """The error for an answer over ``limit`` bytes (the same from either lane)."""
    once = " once decoded" if decoded else ""
    return AnswerTooLargeError(
        f"{method} {redact_url(url)}: the answer is larger than {limit} bytes{once}",
        method=method,
        url=str(url),
    )


def answer_error(
    status: int, headers: Mapping[str, str], raw: bytes, method: str, url: yarl.URL
) -> APIStatusError:
    """The :class:`APIStatusError` subclass for an error answer (``raw``: its body).

    ``headers`` is read with lower-case names: aiohttp's headers ignore case, and the
    HTTP/1.1 pool's are lower-cased.
    """
    text = raw[:ERROR_BODY_LIMIT].decode("utf-8", "replace")
    return error_for_status(
        status,
        detail=_error_detail(status, text, headers),
        method=method,
        url=str(url),
        body_excerpt=text,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


def _error_detail(status: int, text: str, headers: Mapping[str, str]) -> Any:
    """FastAPI's ``detail`` when the body has one, else the body text, whitespace collapsed."""
    if 300 <= status < 400:
        return f"redirect to {headers.get('location', '?')} (redirects are not followed)"
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "detail" in parsed:
        return parsed["detail"]
    title = _HTML_TITLE.search(text)
    if title:  # a proxy's error page: its title says it all, the excerpt keeps the rest
        return f"{_collapse(title.group(1))} (HTML page)"
    return _collapse(text)[:200] or None


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def json_answer(
    raw: bytes, status: int, content_type: str, method: str, url: yarl.URL
) -> dict[str, Any]:
    """The JSON object of a 2xx answer's body ``raw``; :class:`ProtocolError` if it is not one.

    Every answer of the API is an object, so an empty body, JSON cut short, an HTML page or
    JSON of another type all fail here, the same on both lanes; whether the call is then sent
    again is the retry policy's decision (by call kind: never for a create).
    """
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        data = _NOT_JSON
    if isinstance(data, dict):
        return data
    raise ProtocolError(
        f"{method} {redact_url(url)}: expected a JSON object, got {_what(raw, content_type, data)}",
        status=status,
        body_excerpt=raw.decode("utf-8", "replace"),
        method=method,
        url=str(url),
    )


_NOT_JSON: Final = object()


def _what(raw: bytes, content_type: str, data: Any) -> str:
    """What a 2xx body that is not a JSON object is, for the error message."""
    if not raw.strip():
        return "an empty body"
    if data is not _NOT_JSON:
        return f"JSON of another type ({type(data).__name__})"
    return "an HTML page" if "html" in content_type else "invalid or truncated JSON"


def job_from_answer(data: Any, method: str, path: str) -> Job:
    """The Job object of a 2xx answer to ``method path``; :class:`ProtocolError` if it is not."""
    try:
        return job_from_json(data)
    except Exception as exc:  # cattrs raises ClassValidationError, KeyError, TypeError, ...
        raise ProtocolError(
            f"{method} {path}: the answer is not a Job object ({type(exc).__name__})",
            status=200,
            body_excerpt=repr(data),
            method=method,
            url=path,
        ) from exc


def as_job(method: str, path: str) -> Callable[[Any], Job]:
    """The ``decode`` of a call answered by a Job: :func:`job_from_answer` within each attempt."""
    return functools.partial(job_from_answer, method=method, path=path)
