"""The ``chutes-jobs`` command.

Exit codes: 0 success, 1 the job failed, 2 usage error, 3 API or transport error,
130 interrupted. Errors print one line, without secrets. ``--json`` prints machine-readable
output on stdout; progress and logs go to stderr (bars only on a terminal).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

try:
    import click
except ImportError:  # pragma: no cover - the cli extra is missing
    sys.exit("the chutes-jobs command needs its extra: pip install 'chutes-jobs[cli]'")

from . import demo as demo_module
from ._progress import ProgressDisplay
from .errors import ChutesError, ConfigurationError, JobFailedError
from .models import Job, job_to_json
from .session import ChutesSession

__all__ = ["main"]

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_INTERRUPTED = 130

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """Print one error line and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``, mapping interrupts and library errors to exit codes and one-line messages."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        click.echo("interrupted (partial downloads are kept as .part files for resume)", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except JobFailedError as exc:
        fail(str(exc), EXIT_JOB_FAILED)
    except ConfigurationError as exc:
        fail(str(exc), EXIT_USAGE)
    except (ChutesError, OSError) as exc:
        fail(str(exc), EXIT_API_ERROR)
    except ExceptionGroup as group:
        fail("; ".join(str(e) for e in group.exceptions), EXIT_API_ERROR)


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON on stdout, or ``text`` for a person."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def job_summary(job: Job) -> str:
    """One line about a job's state for a person."""
    status = f" ({job.status})" if job.status else ""
    return f"job {job.job_id}: {job.state.value}{status}"


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--base-url`` and ``--api-key``, read from the environment when not given."""
    fn = click.option(
        "--api-key", envvar="CHUTES_API_KEY", help="API key (default: $CHUTES_API_KEY)."
    )(fn)
    return click.option(
        "--base-url",
        envvar="CHUTES_BASE_URL",
        default="https://api.chutes.ai",
        show_default=True,
        help="API root (also $CHUTES_BASE_URL).",
    )(fn)


def with_session(
    fn: Callable[..., Coroutine[Any, Any, T]],
) -> Callable[..., Coroutine[Any, Any, T]]:
    """Open a :class:`ChutesSession` from ``base_url``/``api_key`` and pass it as ``session``."""

    @functools.wraps(fn)
    async def wrapper(*, base_url: str, api_key: str | None, **kwargs: Any) -> T:
        async with ChutesSession.from_env(base_url=base_url, api_key=api_key) as session:
            return await fn(session=session, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chutes-jobs")
def main() -> None:
    """chutes-jobs: run and manage Chutes jobs, or a local emulator of the Jobs API."""


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("chutes-demo-output"),
    show_default=True,
    help="Where the outputs are downloaded.",
)
@click.option("--size-mib", type=click.IntRange(1, 4096), default=128, show_default=True)
@json_option
def demo(out: Path, size_mib: int, as_json: bool) -> None:
    """Run a whole job lifecycle on the embedded emulator (no credentials needed)."""
    report = run_async(demo_module.run_demo(out, size_mib=size_mib, quiet=as_json))
    if as_json:
        emit(report, True, "")
    if not report["verified"]:
        sys.exit(EXIT_JOB_FAILED)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--no-range", is_flag=True, help="Answer Range requests with 200, like live.")
@click.option("--live-quirks", is_flag=True, help="Reproduce the live server's bugs.")
def emulator(
    host: str, port: int, data_dir: Path | None, no_range: bool, live_quirks: bool
) -> None:
    """Serve the local Jobs API emulator until interrupted."""
    from .emulator.__main__ import serve

    try:
        asyncio.run(
            serve(
                host=host,
                port=port,
                data_dir=data_dir,
                range_support=not no_range,
                live_quirks=live_quirks,
            )
        )
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def parse_args(pairs: tuple[str, ...], args_json: str | None) -> dict[str, Any]:
    """Job arguments from ``--args-json FILE|-`` and ``--arg k=v`` (v parsed as JSON if it can)."""
    args: dict[str, Any] = {}
    if args_json is not None:
        text = sys.stdin.read() if args_json == "-" else Path(args_json).read_text()
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--args-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--args-json")
        args.update(loaded)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--arg")
        try:
            args[name] = json.loads(raw)
        except json.JSONDecodeError:
            args[name] = raw
    return args


submit_options = [
    click.argument("chute"),
    click.argument("method"),
    click.option("--arg", "pairs", multiple=True, metavar="NAME=VALUE", help="A job argument."),
    click.option("--args-json", metavar="FILE|-", help="A JSON object of job arguments."),
    click.option("--disk-gb", type=float, default=None, help="Disk size (10 < N < 1000)."),
]


def add_options(options: list[Callable[..., Any]]) -> Callable[..., Any]:
    """Apply a list of click decorators."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


@main.command()
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
    """Create a job of CHUTE's METHOD and print its id."""
    args = parse_args(pairs, args_json)

    @with_session
    async def go(session: ChutesSession) -> Job:
        handle = await session.create_job(chute, method, args, disk_gb=disk_gb)
        assert handle.job is not None
        return handle.job

    job = run_async(go(**conn))
    emit(job_to_json(job, include_status=True), as_json, job.job_id)


@main.command()
@click.argument("job_id")
@connection_options
@json_option
def status(job_id: str, as_json: bool, **conn: Any) -> None:
    """Show a job's current state."""

    @with_session
    async def go(session: ChutesSession) -> Job:
        return await session.job(job_id).refresh()

    job = run_async(go(**conn))
    emit(job_to_json(job, include_status=True), as_json, job_summary(job))


@main.command()
@click.argument("job_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@connection_options
@json_option
def wait(job_id: str, timeout: float | None, as_json: bool, **conn: Any) -> None:
    """Wait until a job is finished (exit 1 if it failed)."""

    @with_session
    async def go(session: ChutesSession) -> Job:
        handle = session.job(job_id)
        async for snapshot in handle.watch(timeout=timeout):
            if not as_json:
                click.echo(job_summary(snapshot), err=True)
        assert handle.job is not None
        return handle.job

    job = run_async(go(**conn))
    emit(job_to_json(job, include_status=True), as_json, job_summary(job))
    if job.failed:
        sys.exit(EXIT_JOB_FAILED)


async def _download(
    session: ChutesSession, job_id: str, out: Path, overwrite: bool, quiet: bool
) -> dict[str, Path]:
    handle = session.job(job_id)
    with ProgressDisplay("download") as display:
        return await handle.download_outputs(
            out, overwrite=overwrite, progress=None if quiet else display.update
        )


@main.command()
@click.argument("job_id")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
@connection_options
@json_option
def download(job_id: str, out: Path, overwrite: bool, as_json: bool, **conn: Any) -> None:
    """Download every output file of a finished job into --out."""

    @with_session
    async def go(session: ChutesSession) -> dict[str, Path]:
        return await _download(session, job_id, out, overwrite, as_json)

    paths = run_async(go(**conn))
    emit({k: str(v) for k, v in paths.items()}, as_json, "\n".join(map(str, paths.values())))


@main.command()
@click.argument("job_id")
@connection_options
@json_option
def delete(job_id: str, as_json: bool, **conn: Any) -> None:
    """Delete a job, its files and its worker."""

    @with_session
    async def go(session: ChutesSession) -> None:
        await session.job(job_id).delete()

    run_async(go(**conn))
    emit({"job_id": job_id, "deleted": True}, as_json, f"deleted job {job_id}")


@main.command()
@add_options(submit_options)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--timeout", type=float, default=None, help="Give up waiting after N seconds.")
@click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
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
    """Submit a job, wait for it, and download its outputs into --out."""
    args = parse_args(pairs, args_json)

    @with_session
    async def go(session: ChutesSession) -> tuple[Job, dict[str, Path]]:
        handle = await session.create_job(chute, method, args, disk_gb=disk_gb)
        if not as_json:
            click.echo(f"created job {handle.id}", err=True)
        job = await handle.wait(timeout=timeout)
        paths = await _download(session, handle.id, out, overwrite, as_json)
        return job, paths

    job, paths = run_async(go(**conn))
    data = {
        "job": job_to_json(job, include_status=True),
        "paths": {k: str(v) for k, v in paths.items()},
    }
    emit(data, as_json, "\n".join(map(str, paths.values())))
