"""Typed models of the Jobs API, and the one cattrs converter that reads and writes them.

The live server sends no ``status`` and no ``error_detail``: :attr:`Job.state` is derived from
``instance_id`` and ``finished_at``, and ``status``/``error_detail`` are read when a server sends
them. Timestamps come without an offset and are read as UTC. Unknown fields are ignored.

A finished job's outcome (:class:`JobOutcome`) is decided here and nowhere else
(:func:`read_outcome`): from a ``status`` the server sends, else from the outcome record this
library's worker writes under :data:`OUTCOME_KEY` in ``result`` (:func:`outcome_record`), else
from an output file listed but never uploaded.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._redact import REDACTED

__all__ = [
    "MAX_RECORDED_DETAIL",
    "OUTCOME_KEY",
    "SUCCESS_STATUSES",
    "ChuteSummary",
    "InstanceSummary",
    "Job",
    "JobOutcome",
    "JobState",
    "OutcomeReading",
    "OutputFile",
    "converter",
    "file_id_for",
    "job_from_json",
    "job_to_json",
    "outcome_record",
    "read_outcome",
]

#: Stored statuses that mean the job succeeded.
SUCCESS_STATUSES = frozenset({"complete", "completed", "success", "succeeded"})

#: The key of a job's ``result`` under which this library's worker records the outcome:
#: ``{"chutes_jobs": {"status": "complete"}}`` or ``{"chutes_jobs": {"status": "error",
#: "detail": "<first line of the detail>"}}``. The live server never returns the ``status``
#: and ``detail`` a worker sends, so this record is how the user side learns the outcome.
OUTCOME_KEY = "chutes_jobs"
#: Longest ``detail`` kept in the outcome record, in characters (a traceback must not bloat
#: the job: only the first line of the detail is recorded, cut to this length).
MAX_RECORDED_DETAIL = 1000


class JobState(enum.Enum):
    """Where a job is in its lifecycle, as far as the server's fields tell."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"


class JobOutcome(enum.Enum):
    """How a finished job ended, as far as what the server returns tells (see :func:`read_outcome`).

    ``UNKNOWN``: finished, and nothing says how (no ``status``, no outcome record in
    ``result``, no missing output), e.g. a job reported by another worker library on the live
    server. It is not a success.
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


def file_id_for(job_id: str, filename: str) -> str:
    """The id of an output file: ``uuid5(UUID(job_id), filename)``, as the server computes it."""
    return str(uuid.uuid5(uuid.UUID(job_id), filename))


@attrs.frozen
class OutputFile:
    """One output file of a job."""

    file_id: str
    filename: str
    path: str | None = None
    uploaded: bool = False


@attrs.frozen
class ChuteSummary:
    """The chute a job runs on, as embedded in the Job object."""

    chute_id: str
    name: str | None = None
    public: bool | None = None
    version: str | None = None
    slug: str | None = None
    chutes_version: str | None = None
    preemptible: bool | None = None
    image: dict[str, Any] | None = None


@attrs.frozen
class InstanceSummary:
    """The worker instance holding a running job."""

    instance_id: str
    region: str | None = None
    active: bool | None = None
    verified: bool | None = None
    last_verified_at: datetime | None = None


@attrs.frozen
class OutcomeReading:
    """What a job snapshot tells of its outcome: :func:`read_outcome`'s answer.

    ``outcome`` is None while the job is not finished. ``status`` is the status the outcome was
    read from (the server's, else the worker's record; None when neither was there);
    ``detail`` says why a job failed, when known (None for other outcomes).
    """

    outcome: JobOutcome | None
    status: str | None = None
    detail: str | None = None


def _redacted_urls(urls: Mapping[str, str]) -> str:
    return repr({name: REDACTED for name in urls})


@attrs.frozen
class Job:
    """A snapshot of a job, as one response of the server described it."""

    job_id: str
    user_id: str | None = None
    chute_id: str | None = None
    version: str | None = None
    chutes_version: str | None = None
    method: str | None = None
    instance_id: str | None = None
    active: bool = False
    verified: bool = False
    last_queried_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    job_args: dict[str, Any] = attrs.field(factory=dict)
    result: Any = None
    output_files: dict[str, OutputFile] = attrs.field(factory=dict)
    host: str | None = None
    port_mappings: list[dict[str, Any]] | None = None
    chute: ChuteSummary | None = None
    instance: InstanceSummary | None = None
    #: ``{filename: upload_url}``, only filled in finish's answer. Each URL holds a token.
    output_storage_urls: dict[str, str] = attrs.field(factory=dict, repr=_redacted_urls)
    status: str | None = None
    error_detail: str | None = None
    #: True when the client built this snapshot itself, not read from an answer: a worker's
    #: complete whose answer was lost and that could not read the job back (see
    #: :meth:`JobHandle.complete`). It is finished; fields this process never saw are empty.
    #: Never read from nor written to JSON.
    assumed: bool = False

    @property
    def state(self) -> JobState:
        """Pending (no instance), running (instance set) or finished (``finished_at`` set)."""
        if self.finished_at is not None:
            return JobState.FINISHED
        if self.instance_id is not None or self.instance is not None:
            return JobState.RUNNING
        return JobState.PENDING

    @property
    def is_finished(self) -> bool:
        """True once the job has a ``finished_at`` time."""
        return self.state is JobState.FINISHED

    @property
    def outcome(self) -> JobOutcome | None:
        """How the job ended (None while it is not finished); see :func:`read_outcome`."""
        return read_outcome(self).outcome

    @property
    def outcome_detail(self) -> str | None:
        """Why the job failed, when known: the server's ``error_detail``, else the worker's
        recorded detail, else the output files that never arrived. None unless FAILED."""
        return read_outcome(self).detail

    @property
    def outcome_status(self) -> str | None:
        """The status the outcome was read from: the server's ``status``, else the one the
        worker recorded in ``result``; None when neither is there."""
        return read_outcome(self).status

    @property
    def failed(self) -> bool:
        """True only when the job finished and its :attr:`outcome` is ``FAILED``."""
        return read_outcome(self).outcome is JobOutcome.FAILED

    def file(self, name_or_id: str) -> OutputFile:
        """The output file with this file id or filename (``KeyError`` if none)."""
        if name_or_id in self.output_files:
            return self.output_files[name_or_id]
        for f in self.output_files.values():
            if f.filename == name_or_id:
                return f
        raise KeyError(f"job {self.job_id} has no output file {name_or_id!r}")


def outcome_record(status: str, detail: str | None) -> dict[str, str]:
    """The record a worker writes under :data:`OUTCOME_KEY` in the job's ``result``.

    ``{"status": status}``, plus ``"detail"``: the first non-blank line of ``detail``, cut to
    :data:`MAX_RECORDED_DETAIL` characters (omitted when there is none).
    """
    record = {"status": status}
    first = next((line.strip() for line in (detail or "").splitlines() if line.strip()), "")
    if len(first) > MAX_RECORDED_DETAIL:
        first = first[: MAX_RECORDED_DETAIL - 1] + "…"
    if first:
        record["detail"] = first
    return record


def _recorded(result: Any) -> tuple[str, str | None] | None:
    """``(status, detail)`` of the outcome record in ``result``; None when there is none."""
    record = result.get(OUTCOME_KEY) if isinstance(result, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return None
    detail = record.get("detail")
    return record["status"], detail if isinstance(detail, str) and detail else None


def _succeeded(status: str) -> bool:
    return status.lower() in SUCCESS_STATUSES


def read_outcome(job: Job) -> OutcomeReading:
    """The one rule that tells how a job ended, read in this order:

    1. a ``status`` the server sends: a success status (:data:`SUCCESS_STATUSES`) is
       ``SUCCEEDED``, any other ``FAILED`` (the server has already accounted for uploads);
    2. the worker's record under :data:`OUTCOME_KEY` in ``result``: a failure status is
       ``FAILED``; a success is ``SUCCEEDED`` unless an output file it listed never arrived
       (recorded before the uploads, it cannot know: the server itself then stores a
       ``partial_failure``);
    3. an output file listed but never uploaded: ``FAILED``;
    4. otherwise ``UNKNOWN``.

    ``outcome`` is None while the job is not finished.
    """
    if not job.is_finished:
        return OutcomeReading(None)
    missing = sorted(f.filename for f in job.output_files.values() if not f.uploaded)
    never_uploaded = f"output files never uploaded: {', '.join(missing)}" if missing else None
    recorded = _recorded(job.result)
    recorded_detail = recorded[1] if recorded is not None else None
    if job.status is not None:
        if _succeeded(job.status):
            return OutcomeReading(JobOutcome.SUCCEEDED, job.status)
        detail = job.error_detail or recorded_detail or never_uploaded
        return OutcomeReading(JobOutcome.FAILED, job.status, detail)
    if recorded is not None:
        status = recorded[0]
        if not _succeeded(status):
            detail = recorded_detail or never_uploaded or f"job ended with status {status!r}"
            return OutcomeReading(JobOutcome.FAILED, status, detail)
        if never_uploaded is None:
            return OutcomeReading(JobOutcome.SUCCEEDED, status)
        return OutcomeReading(JobOutcome.FAILED, status, never_uploaded)
    if never_uploaded is not None:
        return OutcomeReading(JobOutcome.FAILED, None, never_uploaded)
    return OutcomeReading(JobOutcome.UNKNOWN)


def _parse_datetime(value: Any, _: type) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _format_datetime(value: datetime) -> str:
    """Naive UTC ISO-8601, the way the live server writes timestamps."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()


def _structure_output_files(value: Any, _: type) -> dict[str, OutputFile]:
    if not value:  # null, [] and {} all mean "no files"
        return {}
    if isinstance(value, list):  # tolerate a list of file objects carrying their own id
        return {f["file_id"]: converter.structure(f, OutputFile) for f in value}
    return {
        file_id: converter.structure({"file_id": file_id, **info}, OutputFile)
        for file_id, info in value.items()
    }


def _unstructure_output_files(files: dict[str, OutputFile]) -> dict[str, Any]:
    return {
        file_id: {"filename": f.filename, "path": f.path, "uploaded": f.uploaded}
        for file_id, f in files.items()
    }


def _optional_str(value: Any, _: type) -> str | None:
    return value if value is None or type(value) is str else str(value)


def _optional_bool(value: Any, _: type) -> bool | None:
    return None if value is None else bool(value)


def _optional_datetime(value: Any, _: type) -> datetime | None:
    return None if value is None else _parse_datetime(value, datetime)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    # Direct hooks for the many optional scalar fields: cattrs' generic Optional dispatch costs
    # about a third of parsing a Job, which is on the hot path of every create and poll.
    conv.register_structure_hook(str | None, _optional_str)
    conv.register_structure_hook(bool | None, _optional_bool)
    conv.register_structure_hook(datetime | None, _optional_datetime)
    conv.register_structure_hook(datetime, _parse_datetime)
    conv.register_unstructure_hook(datetime, _format_datetime)
    conv.register_structure_hook(
        Job,
        make_dict_structure_fn(
            Job,
            conv,
            output_files=override(struct_hook=_structure_output_files),
            assumed=override(omit=True),
        ),
    )
    conv.register_unstructure_hook(
        Job,
        make_dict_unstructure_fn(
            Job,
            conv,
            output_files=override(unstruct_hook=_unstructure_output_files),
            assumed=override(omit=True),
        ),
    )
    return conv


#: The one converter for every model of the library.
converter = _make_converter()


def job_from_json(data: Any) -> Job:
    """Read a Job object as the server sent it (``ProtocolError`` handling is the caller's)."""
    return converter.structure(data, Job)


def job_to_json(job: Job, *, include_status: bool = False) -> dict[str, Any]:
    """A Job as live-shaped JSON: no ``status``/``error_detail`` unless asked, naive UTC times."""
    data: dict[str, Any] = converter.unstructure(job)
    if not include_status:
        data.pop("status", None)
        data.pop("error_detail", None)
    return data
