"""The worker's side of a job: finish (report the outcome), upload outputs, complete.

A worker holds only the job status URL, ``{base}/jobs/{id}?token=JWT``; the token is its only
credential and is never logged. What is sent follows PROTOCOL.md to the letter, because the
live server breaks a job for good on a missing ``result`` or a failure without ``detail``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator, Mapping
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs

from ._redact import REDACTED
from .errors import BadRequestError, ChutesError, ConfigurationError, NotFoundError
from .models import Job, job_from_json
from .retry import CallKind
from .transfer import ProgressCallback, multipart_upload_body

if TYPE_CHECKING:
    from .session import ChutesSession

__all__ = [
    "UploadReport",
    "UploadResult",
    "UploadTargets",
    "collect_outputs",
    "parse_status_url",
]

log = logging.getLogger("chutes_jobs")

ALREADY_FINISHED = "job already finished"


@attrs.frozen
class StatusURL:
    """The parts of a job status URL."""

    base_url: str
    job_id: str
    token: str = attrs.field(repr=lambda _: REDACTED)


def parse_status_url(url: str) -> StatusURL:
    """Split ``{base}/jobs/{job_id}?token=JWT`` into base URL, job id and token."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"malformed job status URL: {exc}") from None
    segments = parts.path.rstrip("/").split("/")
    tokens = parse_qs(parts.query).get("token", [])
    problem = None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problem = "it must be an absolute http(s) URL"
    elif len(segments) < 3 or segments[-2] != "jobs" or not segments[-1]:
        problem = "its path must end in /jobs/{job_id}"
    elif len(tokens) != 1 or not tokens[0]:
        problem = "it must carry exactly one token= query value"
    if problem:
        raise ConfigurationError(f"malformed job status URL {url!r}: {problem}")
    prefix = "/".join(segments[:-2])
    return StatusURL(f"{parts.scheme}://{parts.netloc}{prefix}", segments[-1], tokens[0])


def _relative_name(name: str) -> str:
    pure = PurePosixPath(name)
    if not name or "\\" in name or "\x00" in name or pure.is_absolute() or ".." in pure.parts:
        raise ConfigurationError(f"output name {name!r} must be a relative POSIX path")
    return pure.as_posix()


def collect_outputs(
    outputs: Mapping[str, str | PathLike[str]] | str | PathLike[str] | None,
) -> dict[str, Path]:
    """``{relative POSIX name: file}`` from a mapping or a directory walked recursively.

    Every file must exist and be a regular file: a finish that lists a file the worker cannot
    upload would leave the job with a missing output.
    """
    if outputs is None:
        return {}
    if isinstance(outputs, str | PathLike):
        root = Path(outputs)
        if not root.is_dir():
            raise ConfigurationError(f"output directory {str(root)!r} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return {p.relative_to(root).as_posix(): p for p in files}
    collected = {_relative_name(name): Path(path) for name, path in outputs.items()}
    for name, path in collected.items():
        if not path.is_file():
            raise ConfigurationError(f"output {name!r}: {str(path)!r} is not a readable file")
    return collected


@attrs.frozen
class UploadTargets:
    """What finish answered: the upload URL of each output file, and the file to send there."""

    urls: Mapping[str, str] = attrs.field(repr=lambda urls: repr({k: REDACTED for k in urls}))
    sources: Mapping[str, Path]
    job: Job

    def __iter__(self) -> Iterator[str]:
        return iter(self.urls)

    def __len__(self) -> int:
        return len(self.urls)


@attrs.frozen
class UploadResult:
    """One file the server confirmed as stored."""

    filename: str
    file_id: str | None
    size: int


@attrs.frozen
class UploadReport:
    """The outcome of :meth:`JobHandle.upload_outputs`: which files landed and which failed."""

    succeeded: Mapping[str, UploadResult]
    failed: Mapping[str, BaseException]

    @property
    def ok(self) -> bool:
        """True when every file was uploaded."""
        return not self.failed

    def raise_for_failures(self) -> None:
        """Raise an ``ExceptionGroup`` of the failures, if any."""
        if self.failed:
            errors = [
                e if isinstance(e, Exception) else RuntimeError(e) for e in self.failed.values()
            ]
            raise ExceptionGroup(f"{len(errors)} upload(s) failed: {sorted(self.failed)}", errors)


def _finish_body(
    status: str, result: Mapping[str, Any] | None, detail: str | None, names: list[str]
) -> dict[str, Any]:
    if not isinstance(status, str) or not status:
        raise ConfigurationError(f"status must be a non-empty string, got {status!r}")
    if result is not None and not isinstance(result, Mapping):
        raise ConfigurationError(
            f"result must be a mapping or None, got {type(result).__name__}: the live server "
            "would store it and answer 500 for that job forever (wrap it, e.g. {'value': ...})"
        )
    if detail is not None and not isinstance(detail, str):
        raise ConfigurationError(f"detail must be a string, got {type(detail).__name__}")
    body: dict[str, Any] = {
        "status": status,
        "result": dict(result) if result is not None else None,
        "output_filenames": names,
    }
    if status != "complete":
        body["detail"] = detail or f"job ended with status {status!r}"
    elif detail is not None:
        body["detail"] = detail
    return body


async def finish_job(
    session: ChutesSession,
    job_path: str,
    token: str,
    *,
    status: str,
    result: Mapping[str, Any] | None,
    detail: str | None,
    outputs: Mapping[str, str | PathLike[str]] | str | PathLike[str] | None,
) -> tuple[UploadTargets, Job]:
    """POST the outcome; return the upload targets and the job snapshot finish answered."""
    sources = await asyncio.to_thread(collect_outputs, outputs)
    body = _finish_body(status, result, detail, sorted(sources))
    data = await session.request(
        "POST", job_path, kind=CallKind.IDEMPOTENT, json=body, auth=False, token=token
    )
    job = job_from_json(data)
    missing = sorted(set(sources) - set(job.output_storage_urls))
    if missing:
        raise ConfigurationError(f"finish answered no upload URL for {missing}")
    urls = {name: job.output_storage_urls[name] for name in sources}
    log.info("finished job %s with status %s, %d output(s)", job.job_id, status, len(urls))
    return UploadTargets(urls=urls, sources=sources, job=job), job


async def upload_file(
    session: ChutesSession,
    name: str,
    source: Path,
    url: str,
    *,
    progress: ProgressCallback | None = None,
) -> UploadResult:
    """Send one file as a streamed multipart PUT; a retry re-opens the file and sends it whole."""
    size = os.stat(source).st_size

    async def attempt(_: int) -> UploadResult:
        body = multipart_upload_body(source, name, progress=progress)
        async with session.send_once(
            "PUT", url, auth=False, data=body, timeout=session.transfer_timeout
        ) as response:
            answer = await response.json(content_type=None)
        file_id = answer.get("file_id") if isinstance(answer, dict) else None
        return UploadResult(filename=name, file_id=file_id, size=size)

    result = await session.retry_policy.run(CallKind.TRANSFER, attempt)
    log.info("uploaded %s (%d bytes)", name, size)
    return result


async def upload_all(
    session: ChutesSession,
    targets: UploadTargets,
    *,
    concurrency: int,
    progress: ProgressCallback | None,
) -> UploadReport:
    """Upload every target, at most ``concurrency`` at once; failures are collected, not raised."""
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
    gate = asyncio.Semaphore(concurrency)
    succeeded: dict[str, UploadResult] = {}
    failed: dict[str, BaseException] = {}

    async def one(name: str) -> None:
        async with gate:
            try:
                succeeded[name] = await upload_file(
                    session, name, targets.sources[name], targets.urls[name], progress=progress
                )
            except (ChutesError, OSError) as exc:
                log.warning("upload of %s failed: %s", name, exc)
                failed[name] = exc

    async with asyncio.TaskGroup() as group:
        for name in targets.urls:
            group.create_task(one(name))
    return UploadReport(succeeded=succeeded, failed=failed)


async def complete_job(session: ChutesSession, job_path: str, token: str, last: Job | None) -> Job:
    """PUT complete. ``400 Job already finished`` means an earlier attempt landed: success."""
    try:
        data = await session.request(
            "PUT", job_path, kind=CallKind.IDEMPOTENT, json={}, auth=False, token=token
        )
    except BadRequestError as exc:
        if ALREADY_FINISHED not in str(exc.detail).lower():
            raise
        log.info("job at %s was already completed", job_path)
        return await _already_completed(session, job_path, last)
    return job_from_json(data)


async def _already_completed(session: ChutesSession, job_path: str, last: Job | None) -> Job:
    """The final job after a completion we did not see answered: GET it if we may."""
    if session.has_user_credentials:
        try:
            return job_from_json(await session.request("GET", job_path, kind=CallKind.READ))
        except NotFoundError:
            pass
    if last is None:
        raise ConfigurationError("the job was already completed and no snapshot of it is known")
    return last
