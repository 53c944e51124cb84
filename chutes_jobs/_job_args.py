"""A job's arguments and path segments, checked before anything is sent."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from numbers import Real
from typing import Any
from urllib.parse import quote

from .errors import ConfigurationError

__all__ = ["DISK_GB_MAX", "DISK_GB_MIN", "create_body", "create_path", "segment"]

DISK_GB_MIN = 10  # exclusive, as the server checks
DISK_GB_MAX = 1000  # exclusive

#: Characters ``quote(value, safe="")`` never changes (RFC 3986 unreserved).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")
_DOTS = frozenset({".", ".."})


def segment(value: str, what: str) -> str:
    """``value`` checked and quoted as one URL path segment.

    Refused before sending: ``/`` (the server decodes ``%2F`` before routing, so a quoted
    slash still lands on another route: ``x/download/y`` as a job id would be a download),
    and ``.``/``..`` (URL normalization turns them into another path, quoted or not).
    """
    if type(value) is str and _UNRESERVED.fullmatch(value) and value not in _DOTS:
        return value  # the common case (ids, method names): quoting would leave it as is
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}")
    if "/" in value:
        raise ConfigurationError(
            f"{what} cannot contain '/', got {value!r}: the server decodes %2F before routing, "
            "so it would reach another route (create a job by the chute's id, not a name "
            "holding a slash)"
        )
    if value in _DOTS:
        raise ConfigurationError(f"{what} cannot be {value!r}")
    return quote(value, safe="")


@functools.lru_cache(maxsize=64)
def _cached_create_path(chute_id: str, method: str) -> str:
    return f"/jobs/{segment(chute_id, 'chute_id')}/{segment(method, 'method')}"


def create_path(chute_id: str, method: str) -> str:
    """``/jobs/{chute_id}/{method}``, checked and quoted (kept: a bulk run repeats it)."""
    if type(chute_id) is str and type(method) is str:
        return _cached_create_path(chute_id, method)
    return f"/jobs/{segment(chute_id, 'chute_id')}/{segment(method, 'method')}"


def create_body(args: Mapping[str, Any] | None, disk_gb: float | None) -> dict[str, Any]:
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ConfigurationError(
            f"job args must be a mapping (a JSON object), got {type(args).__name__}"
        )
    for key in args:
        if not isinstance(key, str):
            raise ConfigurationError(f"job args keys must be strings, got {key!r}")
    body = dict(args)
    if disk_gb is not None:
        if "_disk_gb" in body:
            raise ConfigurationError("give the disk size either as disk_gb= or as args['_disk_gb']")
        body["_disk_gb"] = disk_gb
    if "_disk_gb" in body:
        _check_disk_gb(body["_disk_gb"])
    return body


def _check_disk_gb(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigurationError(f"disk_gb must be a number, got {value!r}")
    if not DISK_GB_MIN < float(value) < DISK_GB_MAX:
        raise ConfigurationError(
            f"disk_gb must be greater than {DISK_GB_MIN} and less than {DISK_GB_MAX}, got {value!r}"
        )
