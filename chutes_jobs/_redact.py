"""Redaction of secrets (API keys, signatures, ``token=`` values) from text and URLs."""

from __future__ import annotations

import re

REDACTED = "***"

_TOKEN_QUERY = re.compile(r"(?i)(\btoken=)[^&\s\"'<>]+")
_API_KEY = re.compile(r"\bcpk_[A-Za-z0-9._\-]+")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._\-]+")
#: A URL's password (``scheme://user:password@host``) and libpq's ``password=`` parameter.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^/?#\s]*(@)")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword=)[^&\s\"'<>]+")


def redact(text: str) -> str:
    """Return ``text`` with every token query value, API key, bearer credential and password
    (in a URL's ``user:password@`` or a ``password=`` parameter) masked."""
    text = _TOKEN_QUERY.sub(rf"\g<1>{REDACTED}", text)
    text = _API_KEY.sub(f"cpk_{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text)
    text = _PASSWORD_PARAM.sub(rf"\g<1>{REDACTED}", text)
    return _BEARER.sub(rf"\g<1>{REDACTED}", text)


def redact_url(url: object) -> str:
    """A URL (``str`` or ``yarl.URL``) as text safe to log: ``token=`` values masked."""
    return redact(str(url))
