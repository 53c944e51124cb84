"""Printing: results on stdout (for a person, or JSON with ``--json``), progress on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..models import Job, JobOutcome, job_to_json


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON on stdout, or ``text`` for a person."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def emit_line(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as one compact JSON object on its own line (JSON Lines), or ``text``."""
    click.echo(json.dumps(data, separators=(",", ":"), default=str) if as_json else text)


def say(message: str) -> None:
    """A progress or log line for a person, on stderr."""
    click.echo(message, err=True)


def job_json(job: Job) -> dict[str, Any]:
    """A job as JSON for output, with ``status``/``error_detail`` when the server sent them,
    and ``outcome`` (``succeeded``/``failed``/``unknown``, null while not finished) with
    ``outcome_detail`` (why it failed, when known)."""
    data = job_to_json(job, include_status=True)
    data["outcome"] = job.outcome.value if job.outcome is not None else None
    data["outcome_detail"] = job.outcome_detail
    return data


def job_summary(job: Job) -> str:
    """One line about a job's state for a person: ``job X: finished (complete)``."""
    label = job.status
    if job.outcome is not None:
        unknown = job.outcome is JobOutcome.UNKNOWN
        label = job.outcome_status or ("outcome unknown" if unknown else job.outcome.value)
    return f"job {job.job_id}: {job.state.value}" + (f" ({label})" if label else "")


def paths_json(paths: dict[str, Path]) -> dict[str, str]:
    """``{filename: path}`` with paths as strings."""
    return {name: str(path) for name, path in sorted(paths.items())}
