"""One job at a time: ``submit``, ``status``, ``wait``, ``download``, ``delete`` and ``run``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .._progress import ProgressDisplay
from ..errors import ChutesError
from ..job import JobHandle
from ..models import Job
from ..session import ChutesSession
from ._app import command
from ._exit import run_async, settle_job_outcome
from ._options import (
    add_options,
    connection_options,
    disk_gb_option,
    json_option,
    out_dir_type,
    read_text,
    with_session,
)
from ._output import emit, job_json, job_summary, paths_json, say

submit_options = [
    click.argument("chute"),
    click.argument("method"),
    click.option(
        "--arg",
        "pairs",
        multiple=True,
        metavar="NAME=VALUE",
        help="A job argument (VALUE read as JSON when it parses, else as text). Repeatable.",
    ),
    click.option(
        "--args-json",
        metavar="FILE|-",
        help="A JSON object of job arguments, from a file or stdin ('-').",
    ),
    disk_gb_option(),
]
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after N seconds (exit 4).",
)
out_option = click.option(
    "--out",
    type=out_dir_type,
    default=Path("."),
    show_default=True,
    help="Folder the outputs go to (subfolders are kept).",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace files that already exist."
)


def parse_args(pairs: tuple[str, ...], args_json: str | None) -> dict[str, Any]:
    """Job arguments from ``--args-json FILE|-`` and ``--arg k=v`` (``--arg`` wins)."""
    args: dict[str, Any] = {}
    if args_json is not None:
        args.update(read_args_json(args_json))
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--arg")
        try:
            args[name] = json.loads(raw)
        except json.JSONDecodeError:
            args[name] = raw
    return args


def read_args_json(source: str) -> dict[str, Any]:
    """The JSON object of job arguments in ``source`` (a path, or ``-`` for stdin)."""
    try:
        loaded = json.loads(read_text(source, "--args-json"))
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args-json") from None
    if not isinstance(loaded, dict):
        raise click.BadParameter("must hold a JSON object", param_hint="--args-json")
    return loaded


async def watch_until_finished(handle: JobHandle, timeout: float | None) -> Job:
    """Poll until the job is finished, telling each change of state on stderr."""
    async for snapshot in handle.watch(timeout=timeout):
        say(job_summary(snapshot))
    assert handle.job is not None
    return handle.job


async def download_outputs(handle: JobHandle, out: Path, overwrite: bool) -> dict[str, Path]:
    """Download a finished job's outputs into ``out``, showing progress on stderr."""
    job = await handle.refresh()
    if not job.is_finished:
        raise ChutesError(
            f"job {job.job_id} is {job.state.value}, not finished: "
            f"wait for it first (chutes-jobs wait {job.job_id})"
        )
    with ProgressDisplay("download") as display:
        return await handle.download_outputs(out, overwrite=overwrite, progress=display.update)


@command()
@add_options(submit_options)
@connection_options
@json_option
def submit(
    chute: str,
    method: str,
    pairs: tuple[str, ...],
    args_json: str | None,
    disk_gb: float | None,
    as_json: bool,
    **conn: Any,
) -> None:
    """Create a job of CHUTE's METHOD and print its id (--json: the job)."""
    args = parse_args(pairs, args_json)

    @with_session
    async def go(session: ChutesSession) -> Job:
        handle = await session.create_job(chute, method, args, disk_gb=disk_gb)
        assert handle.job is not None
        return handle.job

    job = run_async(go(**conn))
    emit(job_json(job), as_json, job.job_id)


@command()
@click.argument("job_id")
@connection_options
@json_option
def status(job_id: str, as_json: bool, **conn: Any) -> None:
    """Show a job's current state (--json: the job); exit 1 if it finished and failed."""

    @with_session
    async def go(session: ChutesSession) -> Job:
        return await session.job(job_id).refresh()

    job = run_async(go(**conn))
    emit(job_json(job), as_json, job_summary(job))
    settle_job_outcome(job)


@command()
@click.argument("job_id")
@timeout_option
@connection_options
@json_option
def wait(job_id: str, timeout: float | None, as_json: bool, **conn: Any) -> None:
    """Wait until a job is finished; exit 1 if it failed (--json: the final job)."""

    @with_session
    async def go(session: ChutesSession) -> Job:
        return await watch_until_finished(session.job(job_id), timeout)

    job = run_async(go(**conn))
    emit(job_json(job), as_json, job_summary(job))
    settle_job_outcome(job)


@command()
@click.argument("job_id")
@out_option
@overwrite_option
@connection_options
@json_option
def download(job_id: str, out: Path, overwrite: bool, as_json: bool, **conn: Any) -> None:
    """Download every output file of a finished job into --out.

    An interrupted download resumes from its .part file when run again.
    Prints each path (--json: {"job_id", "outcome", "paths": {filename: path}}); exit 1
    after downloading if the job failed.
    """

    @with_session
    async def go(session: ChutesSession) -> tuple[Job, dict[str, Path]]:
        handle = session.job(job_id)
        paths = await download_outputs(handle, out, overwrite)
        assert handle.job is not None
        return handle.job, paths

    job, paths = run_async(go(**conn))
    listed = paths_json(paths)
    outcome = job.outcome.value if job.outcome is not None else None
    data = {"job_id": job_id, "outcome": outcome, "paths": listed}
    emit(data, as_json, "\n".join(listed.values()))
    settle_job_outcome(job)


@command()
@click.argument("job_id")
@connection_options
@json_option
def delete(job_id: str, as_json: bool, **conn: Any) -> None:
    """Delete a job, its files and its worker (an already gone job counts as deleted)."""

    @with_session
    async def go(session: ChutesSession) -> None:
        await session.job(job_id).delete()

    run_async(go(**conn))
    emit({"job_id": job_id, "deleted": True}, as_json, f"deleted job {job_id}")


@command()
@add_options(submit_options)
@click.option(
    "--out", type=out_dir_type, required=True, help="Folder the outputs are downloaded to."
)
@timeout_option
@overwrite_option
@connection_options
@json_option
def run(
    chute: str,
    method: str,
    pairs: tuple[str, ...],
    args_json: str | None,
    disk_gb: float | None,
    out: Path,
    timeout: float | None,
    overwrite: bool,
    as_json: bool,
    **conn: Any,
) -> None:
    """Submit a job, wait for it, and download its outputs into --out.

    Exit 1 (nothing downloaded) if the job failed. Prints each path
    (--json: {"job": {...}, "paths": {filename: path}}).
    """
    args = parse_args(pairs, args_json)

    @with_session
    async def go(session: ChutesSession) -> tuple[Job, dict[str, Path]]:
        handle = await session.create_job(chute, method, args, disk_gb=disk_gb)
        say(f"created job {handle.id}")
        job = await watch_until_finished(handle, timeout)
        if job.failed:
            return job, {}
        return job, await download_outputs(handle, out, overwrite)

    job, paths = run_async(go(**conn))
    listed = paths_json(paths)
    data = {"job": job_json(job), "paths": listed}
    emit(data, as_json, "\n".join(listed.values()) or job_summary(job))
    settle_job_outcome(job)
