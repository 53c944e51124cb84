"""The worker's side of a job: finish (report the outcome), upload outputs, complete.

A worker holds only the job status URL, ``{base}/jobs/{id}?token=JWT``; the token is its only
credential and is never logged (every URL goes through the redaction of ``_redact``). What is
sent follows ``docs/PROTOCOL.md`` to the letter, because the live server breaks a job for good
on a missing ``result`` or a failure without ``detail``:

* finish: ``POST /jobs/{id}?token=`` with ``{"status", "result", "output_filenames"}`` plus a
  ``detail`` string whenever the status is not ``"complete"``; ``result`` also records the
  outcome under ``OUTCOME_KEY`` (the server never returns ``status``/``detail``), and output
  names the server could not serve back are refused (``transfer.outputs``);
* upload: one ``PUT`` per file to the URL finish answered, ``multipart/form-data`` with exactly
  the parts ``file`` and ``path``, streamed from disk with a known ``Content-Length``; a retry
  re-opens the file and sends it whole;
* complete: ``PUT /jobs/{id}?token=``; ``400 Job already finished`` (after a retry, after
  aiohttp's own hidden re-send of the PUT, or from a restarted worker whose earlier complete
  landed) means an earlier attempt landed: success, never an error.

Finish and complete are retried like reads (an unreadable 2xx included), bounded by the
policy's attempts and deadline: a finish answered 500 every time (the live server's answer for
a job whose stored ``result`` is not an object) ends in :class:`~chutes_jobs.ServerError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import attrs
import yarl

from ._http import as_job, json_answer, read_answer
from ._redact import REDACTED, register_secret
from .errors import BadRequestError, ChutesError, ConfigurationError, ProtocolError
from .instrumentation.scopes import TransferWatch
from .models import OUTCOME_KEY, Job, outcome_record
from .retry import CallKind
from .transfer import ProgressCallback, multipart_upload_body
from .transfer.outputs import OutputsSpec as OutputsSpec
from .transfer.outputs import collect_outputs

if TYPE_CHECKING:
    from ._http import Transport

__all__ = [
    "OutputsSpec",
    "StatusURL",
    "UploadReport",
    "UploadResult",
    "UploadTargets",
    "already_finished",
    "assumed_final",
    "collect_outputs",
    "complete_job",
    "finish_job",
    "parse_status_url",
    "upload_all",
    "upload_file",
]

log = logging.getLogger("chutes_jobs")

#: ``400 Job already finished``; older server releases spell it "Job alread finished".
ALREADY_FINISHED = re.compile(r"\bjob alread(y)? finished\b", re.IGNORECASE)
#: The body of complete (ignored by the server; what the official SDK sends).
COMPLETE_BODY = {"status": "done"}


@attrs.frozen
class StatusURL:
    """The parts of a job status URL (the token never shows in its repr)."""

    base_url: str
    job_id: str
    token: str = attrs.field(repr=lambda _: REDACTED)


def parse_status_url(url: str) -> StatusURL:
    """Split ``{base}/jobs/{job_id}?token=JWT`` into base URL, job id and token.

    Raises :class:`ConfigurationError` saying what is wrong (the token is redacted).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"the job status URL must be a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError as exc:
        raise ConfigurationError(f"malformed job status URL: {exc}") from None
    segments = parts.path.rstrip("/").split("/")
    tokens = parse_qs(parts.query).get("token", [])
    problem = None
    if parts.scheme not in ("http", "https") or not netloc:
        problem = "it must be an absolute http(s) URL"
    elif len(segments) < 3 or segments[-2] != "jobs" or not segments[-1]:
        problem = "its path must end in /jobs/{job_id}"
    elif len(tokens) != 1 or not tokens[0]:
        problem = "it must carry exactly one token= query value"
    if problem:
        raise ConfigurationError(f"malformed job status URL {url!r}: {problem}")
    prefix = "/".join(segments[:-2])
    register_secret(tokens[0])
    return StatusURL(f"{parts.scheme}://{netloc}{prefix}", segments[-1], tokens[0])


def split_token(url: str) -> tuple[yarl.URL, str]:
    """An upload URL without its ``token=`` value, and the token (sent again by the session)."""
    target = yarl.URL(url)
    tokens = target.query.getall("token", [])
    if not target.is_absolute() or target.scheme not in ("http", "https") or len(tokens) != 1:
        raise ConfigurationError(f"upload URL {url!r} must be an http(s) URL with one token=")
    register_secret(tokens[0])
    return target.without_query_params("token"), tokens[0]


def _redacted_keys(urls: Mapping[str, str]) -> str:
    return repr(dict.fromkeys(urls, REDACTED))


@attrs.frozen
class UploadTargets(Mapping[str, str]):
    """What finish answered: ``{filename: upload URL}``, plus the local file of each name.

    A read-only mapping of filename to upload URL (each URL holds a per-file token, so the
    repr shows the names only). :attr:`sources` says which file goes where; :attr:`job` is
    the snapshot finish answered.
    """

    urls: Mapping[str, str] = attrs.field(repr=_redacted_keys)
    sources: Mapping[str, Path]
    job: Job

    def __getitem__(self, name: str) -> str:
        return self.urls[name]

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
    """The outcome of :meth:`JobHandle.upload_outputs`: which files landed and which failed.

    ``failed`` maps each failed filename to the error that stopped it (after retries); its
    text says why and never holds a token. ``str(report)`` is a one-paragraph summary.
    """

    succeeded: Mapping[str, UploadResult]
    failed: Mapping[str, Exception]

    @property
    def ok(self) -> bool:
        """True when every file was uploaded."""
        return not self.failed

    @property
    def reasons(self) -> dict[str, str]:
        """``{filename: why it failed}``, one line each."""
        return {name: f"{type(e).__name__}: {e}" for name, e in sorted(self.failed.items())}

    def __str__(self) -> str:
        head = f"{len(self.succeeded)} uploaded, {len(self.failed)} failed"
        return "; ".join([head, *(f"{n}: {why}" for n, why in self.reasons.items())])

    def raise_for_failures(self) -> None:
        """Raise an ``ExceptionGroup`` of the failures (each noted with its filename), if any."""
        if not self.failed:
            return
        errors = []
        for name, error in sorted(self.failed.items()):
            error.add_note(f"output file: {name}")
            errors.append(error)
        raise ExceptionGroup(f"{len(errors)} upload(s) failed: {sorted(self.failed)}", errors)


def finish_body(
    status: str, result: Mapping[str, Any] | None, detail: str | None, names: list[str]
) -> dict[str, Any]:
    """The finish body, or :class:`ConfigurationError` for what the live server would break on.

    ``result`` must be a mapping (sent as a JSON object) or None, and JSON without
    NaN/Infinity (:func:`check_result`); ``detail`` is always sent for a status other than
    ``"complete"``. The outcome is recorded in ``result`` under :data:`~chutes_jobs.OUTCOME_KEY`
    (``models.outcome_record``): the live server stores ``status`` and ``detail`` but never
    returns them, so the record is what the user side reads.
    """
    if not isinstance(status, str) or not status:
        raise ConfigurationError(f"status must be a non-empty string, got {status!r}")
    check_result(result, "result")
    if detail is not None and not isinstance(detail, str):
        raise ConfigurationError(f"detail must be a string, got {type(detail).__name__}")
    if status != "complete":
        detail = detail or f"job ended with status {status!r}"
    body: dict[str, Any] = {
        "status": status,
        "result": {**(result or {}), OUTCOME_KEY: outcome_record(status, detail)},
        "output_filenames": names,
    }
    if detail is not None:
        body["detail"] = detail
    return body


def check_result(result: object, what: str) -> None:
    """:class:`ConfigurationError` unless ``result`` can be sent as a job's ``result``.

    A mapping or None, strict JSON (no NaN/Infinity), without the key
    :data:`~chutes_jobs.OUTCOME_KEY` (the library records the outcome there).
    """
    if result is not None and not isinstance(result, Mapping):
        raise ConfigurationError(
            f"{what} must be a mapping or None, got {type(result).__name__}: the live server "
            "would store it and answer 500 for that job forever (wrap it, e.g. {'value': ...})"
        )
    if result is not None and OUTCOME_KEY in result:
        raise ConfigurationError(
            f"{what} cannot hold the key {OUTCOME_KEY!r}: chutes-jobs records the job's "
            "outcome there"
        )
    check_json(dict(result) if result is not None else None, what)


def check_json(value: Any, what: str) -> None:
    """:class:`ConfigurationError` unless ``value`` is strict JSON (no NaN/Infinity)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what} cannot be sent as JSON: {exc}") from None


async def finish_job(
    session: Transport,
    job_path: str,
    token: str,
    *,
    status: str,
    result: Mapping[str, Any] | None,
    detail: str | None,
    outputs: OutputsSpec,
) -> UploadTargets:
    """POST the outcome; return the upload targets (with the job snapshot finish answered).

    Everything is checked before sending: an invalid body or output raises
    :class:`ConfigurationError` and nothing reaches the server.
    """
    sources = await asyncio.to_thread(collect_outputs, outputs)
    body = finish_body(status, result, detail, sorted(sources))
    job = await _job_call(session, "POST", job_path, token, body)
    missing = sorted(set(sources) - set(job.output_storage_urls))
    if missing:
        raise ProtocolError(
            f"finish answered no upload URL for {missing}",
            status=200,
            body_excerpt="",
            method="POST",
            url=str(session.url(job_path)),
        )
    urls = {name: job.output_storage_urls[name] for name in sources}
    log.info("finished job %s with status %s, %d output(s)", job.job_id, status, len(urls))
    return UploadTargets(urls=urls, sources=sources, job=job)


async def upload_file(
    session: Transport,
    name: str,
    source: Path,
    url: str,
    *,
    progress: ProgressCallback | None = None,
    job_id: str | None = None,
) -> UploadResult:
    """Send one file as a streamed multipart PUT; a retry re-opens the file and sends it whole.

    Retried like any transfer (connection errors, 408, 429, 5xx) up to the policy's attempts;
    the policy's total deadline is not applied, since one attempt of a multi-GB file may
    legitimately take longer than it. The instrumentation hooks see one ``upload`` operation
    and transfer (of job ``job_id``).
    """
    target, token = split_token(url)
    policy = attrs.evolve(session.retry_policy, deadline=None)
    async with TransferWatch(session.hooks, "upload", job_id, name, source) as watch:
        progress = watch.progress(progress)

        async def attempt(number: int) -> UploadResult:
            log.debug("upload attempt %d: %s", number, name)
            body, size = await asyncio.to_thread(_upload_body, source, name, progress)
            async with session.send_once(
                "PUT", target, auth=False, token=token, data=body,
                timeout=session.transfer_timeout, attempt=number,
            ) as response:  # fmt: skip
                raw = await read_answer(response, "PUT", target)
                answer = json_answer(raw, response.status, response.content_type, "PUT", target)
            file_id = answer.get("file_id")
            return UploadResult(name, file_id if isinstance(file_id, str) else None, size)

        result = await policy.run(CallKind.TRANSFER, attempt, hooks=session.hooks)
        watch.attempt_done(0, result.size)
    return result


def _upload_body(
    source: Path, name: str, progress: ProgressCallback | None
) -> tuple[aiohttp.MultipartWriter, int]:
    """A fresh body for one attempt (it opens the file when sent) and the size it sends."""
    size = source.stat().st_size  # what FilePayload measures and sends
    return multipart_upload_body(source, name, progress=progress), size


async def upload_all(
    session: Transport,
    targets: UploadTargets,
    *,
    concurrency: int,
    progress: ProgressCallback | None,
) -> UploadReport:
    """Upload every target, at most ``concurrency`` at once; failures are collected, not raised.

    Cancellation is not a failure: it stops every upload and propagates.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
    gate = asyncio.Semaphore(concurrency)
    succeeded: dict[str, UploadResult] = {}
    failed: dict[str, Exception] = {}

    async def one(name: str) -> None:
        async with gate:
            try:
                succeeded[name] = await upload_file(
                    session, name, targets.sources[name], targets.urls[name],
                    progress=progress, job_id=targets.job.job_id,
                )  # fmt: skip
            except Exception as exc:  # one file failing must not stop the others
                log.warning("upload of %s failed: %s", name, _one_line(exc))
                failed[name] = exc

    async with asyncio.TaskGroup() as group:
        for name in targets.urls:
            group.create_task(one(name))
    return UploadReport(succeeded=succeeded, failed=failed)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def already_finished(error: BaseException) -> bool:
    """Whether ``error`` is the server's ``400 Job already finished`` (to finish or complete)."""
    return isinstance(error, BadRequestError) and bool(ALREADY_FINISHED.search(str(error.detail)))


async def complete_job(
    session: Transport,
    job_id: str,
    job_path: str,
    token: str,
    *,
    last: Job | None,
    uploaded: set[str],
) -> Job:
    """PUT complete and return the final job.

    ``400 Job already finished`` means an earlier attempt (ours, aiohttp's hidden re-send, or
    a run of this worker before a restart) landed: success. The final snapshot is then read
    back when the session has user credentials; otherwise it is built from what is known
    (:func:`assumed_final`, marked :attr:`Job.assumed`).
    """
    try:
        return await _job_call(session, "PUT", job_path, token, COMPLETE_BODY)
    except BadRequestError as exc:
        if not already_finished(exc):
            raise
        log.info("job %s was already completed", job_id)
        return await _already_completed(session, job_id, job_path, last, uploaded)


async def _job_call(
    session: Transport, method: str, job_path: str, token: str, body: dict[str, Any]
) -> Job:
    """A worker call answered by the Job (finish, complete); an answer that is not one fails
    the attempt, so it is retried like any other failure of an idempotent call."""
    job: Job = await session.request(
        method, job_path, kind=CallKind.IDEMPOTENT, json=body, auth=False, token=token,
        decode=as_job(method, job_path),
    )  # fmt: skip
    return job


async def _already_completed(
    session: Transport, job_id: str, job_path: str, last: Job | None, uploaded: set[str]
) -> Job:
    if session.has_user_credentials:
        try:
            job: Job = await session.request(
                "GET", job_path, kind=CallKind.READ, decode=as_job("GET", job_path)
            )
            return job
        except ChutesError as exc:
            log.info("could not read the completed job back: %s", _one_line(exc))
    return assumed_final(job_id, last, uploaded)


def assumed_final(job_id: str, last: Job | None, uploaded: set[str]) -> Job:
    """The final job as far as this worker knows, when the server's answer was lost.

    A finished snapshot ``last`` is returned as is. Otherwise a Job marked
    :attr:`Job.assumed`: ``last`` (or, with none, as a restarted worker has, just ``job_id``)
    marked finished now (local clock), without instance, each output file's ``uploaded`` flag
    from what this worker uploaded, and ``status``/``error_detail`` unknown (None).
    """
    if last is not None and last.is_finished:
        return last
    now = datetime.now(UTC)
    if last is None:
        return Job(job_id=job_id, finished_at=now, assumed=True)
    files = {
        file_id: attrs.evolve(info, uploaded=info.uploaded or info.filename in uploaded)
        for file_id, info in last.output_files.items()
    }
    return attrs.evolve(
        last,
        finished_at=now,
        instance_id=None,
        instance=None,
        output_files=files,
        output_storage_urls={},
        status=None,
        error_detail=None,
        assumed=True,
    )
