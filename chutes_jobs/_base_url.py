"""The API root a session talks to, checked once when the session is created."""

from __future__ import annotations

import re

import yarl

from ._redact import redact
from .errors import ConfigurationError

__all__ = ["checked_base_url"]

_USER_INFO = re.compile(r"//[^/@]*@")


def checked_base_url(base_url: str | yarl.URL) -> yarl.URL:
    """``base_url`` without trailing slash; :class:`ConfigurationError` unless it is a plain
    http(s) URL: no query string, fragment or user info, which would be glued into every
    request URL (``https://host/?x=1/jobs/...``) and logged. The error never echoes them."""
    text = str(base_url)
    try:
        url = yarl.URL(text.rstrip("/"))
    except (TypeError, ValueError):
        raise ConfigurationError("base_url is not a valid URL") from None
    if not url.is_absolute() or url.scheme not in ("http", "https"):
        shown = _USER_INFO.sub("//", re.split(r"[?#]", text, maxsplit=1)[0])
        raise ConfigurationError(f"base_url must be an http(s) URL, got {redact(shown)!r}")
    extras = [
        what
        for what, present in (
            ("a query string", "?" in text),
            ("a fragment", "#" in text),
            ("user info", url.user is not None or url.password is not None),
        )
        if present
    ]
    if extras:
        where = f"{url.origin()}{url.path}"
        raise ConfigurationError(
            f"base_url must be the API root alone ({where!r}), without {' or '.join(extras)}: "
            "request paths are appended to it"
        )
    return url
