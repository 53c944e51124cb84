"""The API's route templates: ``/jobs/abc`` is ``/jobs/{job_id}`` (for events and spans).

The routes are those of ``docs/PROTOCOL.md``. A template keeps the path prefix of the
session's ``base_url`` (``https://host/api`` gives ``/api/jobs/{job_id}``); a URL that is none
of the routes has no template.
"""

from __future__ import annotations

import functools

import yarl

__all__ = ["route_template"]


def route_template(method: str, target: str | yarl.URL, base_url: yarl.URL) -> str | None:
    """The route template of ``method target``, or None when it is not an API route.

    ``target`` is a URL, or a path under ``base_url`` as a string (``/jobs/abc``: the common
    case, and the cheap one).
    """
    if isinstance(target, str):
        if "://" not in target:
            return _under_base(method, target, base_url.raw_path)
        target = yarl.URL(target)
    prefix = base_url.path.rstrip("/")
    same_origin = (target.scheme, target.host, target.port) == (
        base_url.scheme,
        base_url.host,
        base_url.port,
    )
    return _template(method, target.path, prefix if same_origin else "")


@functools.lru_cache(maxsize=1024)  # a bulk run's creates all share one path
def _under_base(method: str, path: str, base_path: str) -> str | None:
    prefix = base_path.rstrip("/")
    return _template(method, f"{prefix}/{path.lstrip('/')}", prefix)


@functools.lru_cache(maxsize=1024)
def _template(method: str, path: str, prefix: str) -> str | None:
    if prefix and path.startswith(prefix + "/"):
        rest = path[len(prefix) :]
    else:
        rest, prefix = path, ""
    segments = rest.strip("/").split("/")
    if segments[0] != "jobs" or not all(segments):
        return None
    count, fixed = len(segments), segments[2] if len(segments) > 2 else None
    if count == 2:
        shape = "/jobs/{job_id}"
    elif count == 3 and method == "PUT" and fixed == "upload":
        shape = "/jobs/{job_id}/upload"
    elif count == 3 and method == "POST":
        shape = "/jobs/{chute_id}/{method}"
    elif count == 4 and method == "GET" and fixed == "download":
        shape = "/jobs/{job_id}/download/{file_id}"
    else:
        return None
    return prefix + shape
