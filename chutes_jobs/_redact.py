"""Redaction of secrets from text, URLs and the library's log records.

Two rules, applied together by :func:`redact`:

* by shape: ``token=`` query values, API keys (``cpk_...``), OAuth access tokens
  (``cak_...``) and ``Bearer`` credentials;
* by value: every credential a session holds (API key or token, hotkey seed, worker tokens),
  registered with :func:`register_secret` when the session or handle is built, whatever it
  looks like.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "***"

#: Registered values shorter than this are not masked by value: they would hit ordinary text.
MIN_SECRET_CHARS = 8
#: Most values kept; the oldest go first (a worker process sees one token per job).
MAX_SECRETS = 4096

_TOKEN_QUERY = re.compile(r"(?i)(\btoken=)[^&\s\"'<>]+")
_API_KEY = re.compile(r"\b(cpk|cak)_[A-Za-z0-9._\-]+")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._\-]+")

_secrets: dict[str, None] = {}  # insertion-ordered: the oldest is evicted first
_secrets_lock = threading.Lock()
_by_value: re.Pattern[str] | None = None


def register_secret(value: object) -> None:
    """Mask ``value`` wherever it appears from now on (ignored unless a long enough str)."""
    global _by_value
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS or value in _secrets:
        return
    with _secrets_lock:
        _secrets[value] = None
        while len(_secrets) > MAX_SECRETS:
            del _secrets[next(iter(_secrets))]
        _by_value = None  # rebuilt on next use


def _value_pattern() -> re.Pattern[str] | None:
    global _by_value
    pattern = _by_value
    if pattern is None and _secrets:
        with _secrets_lock:
            longest_first = sorted(_secrets, key=len, reverse=True)  # overlaps masked whole
            pattern = _by_value = re.compile("|".join(map(re.escape, longest_first)))
    return pattern


def _mask_value(match: re.Match[str]) -> str:
    """A registered value masked; a key's ``cpk_``/``cak_`` prefix is kept, as by shape."""
    prefix = match.group()[:4]
    return f"{prefix}{REDACTED}" if prefix in ("cpk_", "cak_") else REDACTED


def redact(text: str) -> str:
    """``text`` with every registered credential, token query value, API key, OAuth token and
    bearer credential masked."""
    pattern = _value_pattern()
    if pattern is not None:
        text = pattern.sub(_mask_value, text)
    text = _TOKEN_QUERY.sub(rf"\g<1>{REDACTED}", text)
    text = _API_KEY.sub(rf"\g<1>_{REDACTED}", text)
    return _BEARER.sub(rf"\g<1>{REDACTED}", text)


def redact_url(url: object) -> str:
    """A URL (``str`` or ``yarl.URL``) as text safe to log: ``token=`` values masked."""
    return redact(str(url))


class RedactingFilter(logging.Filter):
    """Masks secrets in every record of the logger it is attached to (the message is
    formatted here, once, then redacted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging itself reports it when emitting
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def protect_logger(name: str) -> None:
    """Attach one :class:`RedactingFilter` to the logger ``name`` (idempotent).

    A logger's filters see only the records it creates itself, so each library logger is
    protected by name.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


for _name in ("chutes_jobs", "chutes_jobs.emulator"):
    protect_logger(_name)
