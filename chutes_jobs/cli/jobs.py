"""One job at a time: ``submit``, ``status``, ``wait``, ``download``, ``delete`` and ``run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._progress import ProgressDisplay
from ..errors import ChutesError, NotFoundError
from ..job import JobHandle
from ..models import Job
from ..session import ChutesSession
from ._app import command
from ._args import ARG_HELP, ARG_METAVAR, job_arg_pairs, job_args
from ._exit import describe_create_not_found, run_async, settle_job_outcome
from ._options import (
    add_options,
    connection_options,
    disk_gb_option,
    json_option,
    out_dir_type,
    with_session,
)
from ._output import emit, job_json, job_summary, paths_json, say

submit_options = [
    click.argument("chute"),
    click.argument("method"),
    click.option(
        "--arg", "pairs", multiple=True, callback=job_arg_pairs, metavar=ARG_METAVAR, help=ARG_HELP
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


async def create_job(
    session: ChutesSession, chute: str, method: str, args: dict[str, Any], disk_gb: int | None
) -> JobHandle:
    """Create a job; a 404 names both things it can mean (the server only names the chute)."""
    try:
        return await session.create_job(chute, method, args, disk_gb=disk_gb)
    except NotFoundError as exc:
        raise ChutesError(describe_create_not_found(chute, method, exc)) from None


async def watch_until_finished(handle: JobHandle, timeout: float | None) -> Job:
    """Poll until the job is finished, telling each change of state on stderr until then (the
    final state is the command's own output)."""
    async for snapshot in handle.watch(timeout=timeout):
        if not snapshot.is_finished:
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
    pairs: tuple[tuple[str, Any], ...],
    args_json: str | None,
    disk_gb: int | None,
    as_json: bool,
    **conn: Any,
) -> None:
    """Create a job of CHUTE's METHOD and print its id (--json: the job).

    \b
    Example: chutes-jobs submit demo files --arg count:=2 --arg note=hello
    (count is the number 2, note the text "hello").
    """
    args = job_args(pairs, args_json, disk_gb)

    @with_session(creates_only=True)
    async def go(session: ChutesSession) -> Job:
        handle = await create_job(session, chute, method, args, disk_gb)
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

    @with_session()
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

    @with_session()
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

    @with_session()
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
    """Delete a job, its files and its worker.

    A job the server does not know is reported as not found (exit 0: it is gone either way).
    --json: {"job_id", "outcome": "deleted" | "not_found"}.
    """

    @with_session()
    async def go(session: ChutesSession) -> str:
        handle = session.job(job_id)
        try:  # asked first: a DELETE answers 404 both for "never existed" and for a re-send
            await handle.refresh()
        except NotFoundError:
            return "not_found"
        await handle.delete()
        return "deleted"

    outcome = run_async(go(**conn))
    text = (
        f"deleted job {job_id}"
        if outcome == "deleted"
        else f"job {job_id} not found (already deleted, or not yours)"
    )
    emit({"job_id": job_id, "outcome": outcome}, as_json, text)


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
    pairs: tuple[tuple[str, Any], ...],
    args_json: str | None,
    disk_gb: int | None,
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
    args = job_args(pairs, args_json, disk_gb)

    @with_session()
    async def go(session: ChutesSession) -> tuple[Job, dict[str, Path]]:
        handle = await create_job(session, chute, method, args, disk_gb)
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
