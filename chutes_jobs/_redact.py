"""Redaction of secrets from text, URLs and the library's log records.

Two rules, applied together by :func:`redact`:

* by shape: ``token=`` query values, JWTs (worker tokens), API keys (``cpk_...``), OAuth
  access tokens (``cak_...``) and ``Bearer`` credentials;
* by value: every credential a session holds (API key or token, hotkey seed, a worker token
  that is not a JWT), registered with :func:`register_secret` when the session or handle is
  built, whatever it looks like.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "***"

#: Registered values shorter than this are not masked by value: they would hit ordinary text.
MIN_SECRET_CHARS = 8
#: Most values kept; the oldest go first.
MAX_SECRETS = 4096

_TOKEN_QUERY = re.compile(r"(?i)(\btoken=)[^&\s\"'<>]+")
_API_KEY = re.compile(r"\b(cpk|cak)_[A-Za-z0-9._\-]+")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._\-]+")
#: A JWT (worker tokens, HS256 or ES256: header and claims are base64url JSON, ``eyJ...``).
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")

_secrets: dict[str, None] = {}  # insertion-ordered: the oldest is evicted first
#: The registered values grouped by their first MIN_SECRET_CHARS characters, longest first
#: (overlapping values are masked whole). A text is searched once per prefix with
#: ``str.find``: a regex alternation of thousands of tokens takes a second to compile and a
#: millisecond per search. Groups are replaced, never changed in place, so readers take a
#: snapshot (``list(items())``) without the lock.
_groups: dict[str, tuple[str, ...]] = {}
_secrets_lock = threading.Lock()


def register_secret(value: object) -> None:
    """Mask ``value`` wherever it appears from now on.

    Ignored unless a str of at least :data:`MIN_SECRET_CHARS` characters, and for a JWT (a
    worker gets one per job and per file): those are all masked by shape.
    """
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS or value in _secrets:
        return
    if _JWT.fullmatch(value):
        return
    with _secrets_lock:
        _secrets[value] = None
        _regroup(value[:MIN_SECRET_CHARS], add=value)
        while len(_secrets) > MAX_SECRETS:
            oldest = next(iter(_secrets))
            del _secrets[oldest]
            _regroup(oldest[:MIN_SECRET_CHARS], drop=oldest)


def _regroup(prefix: str, *, add: str | None = None, drop: str | None = None) -> None:
    values = [v for v in _groups.get(prefix, ()) if v != drop] + ([add] if add else [])
    if values:
        _groups[prefix] = tuple(sorted(values, key=len, reverse=True))
    else:
        _groups.pop(prefix, None)


def _mask(value: str) -> str:
    """A registered value masked; a key's ``cpk_``/``cak_`` prefix is kept, as by shape."""
    return f"{value[:4]}{REDACTED}" if value[:4] in ("cpk_", "cak_") else REDACTED


def _mask_values(text: str) -> str:
    """``text`` with every registered value masked."""
    hits: list[tuple[int, str]] = []
    for prefix, values in list(_groups.items()):
        position = text.find(prefix)
        while position != -1:
            found = next((v for v in values if text.startswith(v, position)), None)
            if found is not None:
                hits.append((position, found))
            position = text.find(prefix, position + 1)
    if not hits:
        return text
    parts: list[str] = []
    start = 0
    for position, value in sorted(hits, key=lambda hit: (hit[0], -len(hit[1]))):
        if position >= start:  # not inside a value already masked
            parts += (text[start:position], _mask(value))
            start = position + len(value)
    return "".join(parts) + text[start:]


#: A URL's password (``scheme://user:password@host``) and libpq's ``password=`` parameter.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^/?#\s]*(@)")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword=)[^&\s\"'<>]+")


def redact(text: str) -> str:
    """``text`` with every registered credential, token query value, API key, OAuth token,
    bearer credential and password (in a URL's ``user:password@`` or a ``password=``
    parameter) masked."""
    text = _mask_values(text)
    text = _JWT.sub(REDACTED, text)
    text = _TOKEN_QUERY.sub(rf"\g<1>{REDACTED}", text)
    text = _API_KEY.sub(rf"\g<1>_{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text)
    text = _PASSWORD_PARAM.sub(rf"\g<1>{REDACTED}", text)
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
