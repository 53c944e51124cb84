"""Typed models of the Jobs API, and the one cattrs converter that reads and writes them.

The live server sends no ``status`` and no ``error_detail``: :attr:`Job.state` is derived from
``instance_id`` and ``finished_at``, and ``status``/``error_detail`` are read when a server sends
them. Timestamps come without an offset and are read as UTC. Unknown fields are ignored.
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
    "SUCCESS_STATUSES",
    "ChuteSummary",
    "InstanceSummary",
    "Job",
    "JobState",
    "OutputFile",
    "converter",
    "file_id_for",
    "job_from_json",
    "job_to_json",
]

#: Stored statuses that mean the job succeeded.
SUCCESS_STATUSES = frozenset({"complete", "completed", "success", "succeeded"})


class JobState(enum.Enum):
    """Where a job is in its lifecycle, as far as the server's fields tell."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"


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
    def failed(self) -> bool:
        """True when a finished job's outcome is known to be a failure.

        With a ``status`` (servers that send it), anything but a success status is a failure.
        Without one (the live server), a job is failed when an output file it listed never
        arrived. A live job that failed without listing outputs cannot be told apart from a
        success: check :attr:`result` for your own error convention.
        """
        if not self.is_finished:
            return False
        if self.status is not None:
            return self.status.lower() not in SUCCESS_STATUSES
        return any(not f.uploaded for f in self.output_files.values())

    def file(self, name_or_id: str) -> OutputFile:
        """The output file with this file id or filename (``KeyError`` if none)."""
        if name_or_id in self.output_files:
            return self.output_files[name_or_id]
        for f in self.output_files.values():
            if f.filename == name_or_id:
                return f
        raise KeyError(f"job {self.job_id} has no output file {name_or_id!r}")


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
