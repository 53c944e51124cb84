"""The ``chutes-jobs`` command: run and manage Chutes jobs, or a local emulator of the API.

Commands::

    demo       a whole job lifecycle on the embedded emulator (no credentials)
    emulator   serve the local emulator until Ctrl-C
    submit     create a job                      status    show a job
    wait       wait until a job is finished      download  download a job's outputs
    delete     delete a job                      run       submit + wait + download
    bulk       submit many jobs from a JSON Lines file, resumable with a ledger

Job commands talk to ``--base-url`` (or ``$CHUTES_BASE_URL``, default the live API) with
``--api-key`` (or ``$CHUTES_API_KEY``).

Output: results go to stdout; progress and logs go to stderr, as bars only when stderr is a
terminal and as plain lines otherwise. ``--json`` makes stdout machine-readable: one JSON
document, or for ``bulk`` one JSON object per line (each result, then a summary).

Exit codes:

* 0 success
* 1 a job failed (``wait``, ``run``, ``bulk``; ``demo``: verification failed)
* 2 usage error: bad option or argument, bad ``--arg`` or JSON, disk size out of range
* 3 API, transport or file error: unknown job, server unreachable, a download failed,
  a ``bulk`` input not submitted or whose create is unknown
* 4 ``--timeout`` passed while waiting (the job keeps running)
* 130 interrupted by Ctrl-C: partial downloads stay as ``.part`` files and resume when the
  same download runs again; a bulk ledger stays consistent (``emulator``: stopped; SIGTERM
  stops it with 0)

Errors print one line on stderr, never a secret.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

try:
    import click
except ImportError:  # pragma: no cover - the cli extra is missing
    sys.exit("the chutes-jobs command needs its extra: pip install 'chutes-jobs[cli]'")

from . import demo as demo_module
from ._progress import BulkDisplay, ProgressDisplay
from .bulk import BulkOutcome, BulkResult
from .errors import (
    ChutesError,
    ConfigurationError,
    DownloadOutputsError,
    JobFailedError,
    JobTimeoutError,
)
from .job import DISK_GB_MAX, DISK_GB_MIN, JobHandle
from .models import Job, job_from_json, job_to_json
from .retry import RetryPolicy
from .session import DEFAULT_BASE_URL, ChutesSession

__all__ = ["main"]

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

EPILOG = """\b
Exit codes: 0 ok, 1 job failed, 2 usage error, 3 API/transport/file error,
4 wait timed out, 130 interrupted (Ctrl-C; .part files are kept and resume).
\b
Environment: CHUTES_API_KEY, CHUTES_BASE_URL.
"""

#: Longest error line printed.
MAX_ERROR_LINE = 500

T = TypeVar("T")

log = logging.getLogger("chutes_jobs")


# -- errors and output -------------------------------------------------------------------


def fail(message: str, code: int) -> NoReturn:
    """Print one error line on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def one_line(text: str) -> str:
    """``text`` on one line: whitespace collapsed, capped."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_LINE else line[: MAX_ERROR_LINE - 1] + "…"


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (the exception line of a traceback)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def describe_job_failure(job: Job) -> str:
    """``job X failed (status 'error'): RuntimeError: demo failure``."""
    status = f" (status {job.status!r})" if job.status else ""
    detail = last_line(job.error_detail or "")
    missing = [f.filename for f in job.output_files.values() if not f.uploaded]
    if not detail and missing:
        detail = f"output files never uploaded: {', '.join(missing)}"
    return one_line(f"job {job.job_id} failed{status}" + (f": {detail}" if detail else ""))


def describe_download_failure(group: DownloadOutputsError) -> str:
    """One line naming each file that failed and why."""
    parts = []
    for exc in group.exceptions:
        text = str(exc)
        if isinstance(exc, FileExistsError):
            text = text.replace("pass overwrite=True", "pass --overwrite")
        parts.append(text)
    return f"{group.message}: " + "; ".join(parts)


def error_exit(exc: Exception) -> tuple[int, str]:
    """The exit code and one-line message for an error raised by a command."""
    if isinstance(exc, JobFailedError):
        return EXIT_JOB_FAILED, describe_job_failure(exc.job)
    if isinstance(exc, JobTimeoutError):
        return EXIT_TIMEOUT, str(exc)
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, DownloadOutputsError):
        return EXIT_API_ERROR, describe_download_failure(exc)
    if isinstance(exc, ChutesError | OSError):
        return EXIT_API_ERROR, str(exc) or type(exc).__name__
    raise exc  # a bug: let its traceback show


def run_async(
    coro: Coroutine[Any, Any, T],
    interrupted: str = "interrupted; partial downloads are kept as .part files and resume "
    "when the same download runs again",
) -> T:
    """Run ``coro``; map Ctrl-C and library errors to exit codes and one-line messages."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        fail(interrupted, EXIT_INTERRUPTED)
    except Exception as exc:
        code, message = error_exit(exc)
        fail(one_line(message), code)


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON on stdout, or ``text`` for a person."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def emit_line(data: Any) -> None:
    """Print one compact JSON object on its own line (JSON Lines)."""
    click.echo(json.dumps(data, separators=(",", ":"), default=str))


def job_json(job: Job) -> dict[str, Any]:
    """A job as JSON for output, with ``status``/``error_detail`` when the server sent them."""
    return job_to_json(job, include_status=True)


def job_summary(job: Job) -> str:
    """One line about a job's state for a person."""
    status = f" ({job.status})" if job.status else ""
    return f"job {job.job_id}: {job.state.value}{status}"


def paths_json(paths: dict[str, Path]) -> dict[str, str]:
    """``{filename: path}`` with paths as strings."""
    return {name: str(path) for name, path in sorted(paths.items())}


def say(message: str) -> None:
    """A progress or log line for a person, on stderr."""
    click.echo(message, err=True)


# -- shared options ----------------------------------------------------------------------

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
)
out_dir_type = click.Path(file_okay=False, path_type=Path)


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--base-url``, ``--api-key`` (read from the environment when not given), ``--retries``."""
    fn = click.option(
        "--retries",
        type=click.IntRange(0, 20),
        default=4,
        show_default=True,
        help="Retries of a failed call that is safe to repeat.",
    )(fn)
    fn = click.option(
        "--api-key",
        envvar="CHUTES_API_KEY",
        metavar="KEY",
        help="API key (default: $CHUTES_API_KEY).",
    )(fn)
    return click.option(
        "--base-url",
        envvar="CHUTES_BASE_URL",
        default=DEFAULT_BASE_URL,
        show_default=True,
        metavar="URL",
        help="API root (also $CHUTES_BASE_URL).",
    )(fn)


def open_session(base_url: str, api_key: str | None, retries: int) -> ChutesSession:
    """A session for the command's connection options."""
    return ChutesSession.from_env(**session_settings(base_url, api_key, retries))


def session_settings(base_url: str, api_key: str | None, retries: int) -> dict[str, Any]:
    """``ChutesSession`` settings from the connection options."""
    policy = RetryPolicy(max_attempts=retries + 1)
    return {"base_url": base_url, "api_key": api_key or None, "retry_policy": policy}


def with_session(
    fn: Callable[..., Coroutine[Any, Any, T]],
) -> Callable[..., Coroutine[Any, Any, T]]:
    """Open a :class:`ChutesSession` from the connection options; pass it as ``session``."""

    @functools.wraps(fn)
    async def wrapper(*, base_url: str, api_key: str | None, retries: int, **kwargs: Any) -> T:
        async with open_session(base_url, api_key, retries) as session:
            return await fn(session=session, **kwargs)

    return wrapper


def add_options(options: list[Callable[..., Any]]) -> Callable[..., Any]:
    """Apply a list of click decorators, first one outermost."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def disk_gb_option() -> Callable[..., Any]:
    """``--disk-gb N``, checked before anything is sent (exit 2 when out of range)."""
    return click.option(
        "--disk-gb",
        type=click.FloatRange(DISK_GB_MIN, DISK_GB_MAX, min_open=True, max_open=True),
        default=None,
        metavar="N",
        help=f"Disk size in GB, {DISK_GB_MIN} < N < {DISK_GB_MAX}.",
    )


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


def read_text(source: str, option: str) -> str:
    """The text of ``source`` (a path, or ``-`` for stdin); a usage error if unreadable."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {source}: {exc}", param_hint=option) from None


def parse_args(pairs: tuple[str, ...], args_json: str | None) -> dict[str, Any]:
    """Job arguments from ``--args-json FILE|-`` and ``--arg k=v`` (``--arg`` wins)."""
    args: dict[str, Any] = {}
    if args_json is not None:
        try:
            loaded = json.loads(read_text(args_json, "--args-json"))
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


def setup_logging(verbose: int) -> None:
    """Library logs on stderr: errors only by default (the command reports its own error in
    one line), ``-v`` also warnings and info such as retries, ``-vv`` debug."""
    level = (logging.ERROR, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("chutes-jobs: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


# -- the group ---------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="chutes-jobs")
@click.option("-v", "--verbose", count=True, help="More logs on stderr (-vv: debug).")
def cli(verbose: int) -> None:
    """chutes-jobs: run and manage Chutes jobs, or a local emulator of the Jobs API."""
    setup_logging(verbose)


def main(argv: list[str] | None = None) -> None:
    """The console script: run the command line, with Ctrl-C and usage errors mapped."""
    try:
        code = cli.main(args=argv, prog_name="chutes-jobs", standalone_mode=False)
    except click.exceptions.Abort:  # Ctrl-C outside a running command
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def command(**settings: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``@cli.command`` with the exit codes in its ``--help``."""
    return cli.command(epilog=EPILOG, **settings)


# -- demo and emulator -------------------------------------------------------------------


@command()
@click.option(
    "--out",
    type=out_dir_type,
    default=Path("chutes-demo-output"),
    show_default=True,
    help="Where the outputs are downloaded.",
)
@click.option(
    "--size-mib",
    type=click.IntRange(1, 16384),
    default=128,
    show_default=True,
    help="Size of the big output file, in MiB.",
)
@json_option
def demo(out: Path, size_mib: int, as_json: bool) -> None:
    """Run a whole job lifecycle on the embedded emulator (no credentials needed).

    Creates a job producing three files (one of --size-mib MiB), watches it, downloads the
    files into --out, verifies their sha256, and deletes the job.
    """
    report = run_async(demo_module.run_demo(out, size_mib=size_mib, say=say))
    verified = report["verified"]
    count = len(report["files"])
    text = (
        f"all {count} files verified (sha256) in {out}/"
        if verified
        else f"verification FAILED: the files in {out}/ do not match what the job reported"
    )
    emit(report, as_json, text)
    if not verified:
        sys.exit(EXIT_JOB_FAILED)


async def serve_emulator(options: dict[str, Any], as_json: bool) -> None:
    """Serve an emulator until cancelled (Ctrl-C) or SIGTERM, after printing how to use it."""
    from .emulator import Emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Emulator(**options) as emulator:
        info = {
            "base_url": emulator.base_url,
            "api_key": emulator.api_key,
            "demo_chute_id": emulator.demo_chute_id,
        }
        if as_json:
            emit_line(info)
        else:
            click.echo(emulator_banner(info))
        sys.stdout.flush()
        await stop.wait()


def emulator_banner(info: dict[str, Any]) -> str:
    """How to point the job commands at a running emulator."""
    return (
        f"Chutes Jobs emulator at {info['base_url']}\n"
        f"API key: {info['api_key']}\n"
        f"demo chute: {info['demo_chute_id']} (name 'demo')\n"
        f"export CHUTES_BASE_URL={info['base_url']} CHUTES_API_KEY={info['api_key']}\n"
        "Ctrl-C stops it."
    )


@command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to bind (0: any free port).",
)
@click.option(
    "--data-dir",
    type=out_dir_type,
    default=None,
    help="Where output files are stored (default: a temporary folder, removed on exit).",
)
@click.option("--no-range", is_flag=True, help="Answer Range requests with 200, as live does.")
@click.option("--live-quirks", is_flag=True, help="Reproduce the live server's bugs.")
@click.option(
    "--expose-status",
    is_flag=True,
    help="Add status and error_detail to job JSON (the live server does not send them).",
)
@json_option
def emulator(
    host: str,
    port: int,
    data_dir: Path | None,
    no_range: bool,
    live_quirks: bool,
    expose_status: bool,
    as_json: bool,
) -> None:
    """Serve the local Jobs API emulator until Ctrl-C (exit 130) or SIGTERM (exit 0).

    Prints its base URL, its API key and the demo chute's id (--json: one JSON line).
    """
    options = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "range_support": not no_range,
        "live_quirks": live_quirks,
        "expose_status": expose_status,
    }
    run_async(serve_emulator(options, as_json), interrupted="emulator stopped")


# -- one job -----------------------------------------------------------------------------


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
    """Show a job's current state (--json: the job)."""

    @with_session
    async def go(session: ChutesSession) -> Job:
        return await session.job(job_id).refresh()

    job = run_async(go(**conn))
    emit(job_json(job), as_json, job_summary(job))


async def watch_until_finished(handle: JobHandle, timeout: float | None) -> Job:
    """Poll until the job is finished, telling each change of state on stderr."""
    async for snapshot in handle.watch(timeout=timeout):
        say(job_summary(snapshot))
    assert handle.job is not None
    return handle.job


timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after N seconds (exit 4).",
)


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
    if job.failed:
        fail(describe_job_failure(job), EXIT_JOB_FAILED)


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


@command()
@click.argument("job_id")
@out_option
@overwrite_option
@connection_options
@json_option
def download(job_id: str, out: Path, overwrite: bool, as_json: bool, **conn: Any) -> None:
    """Download every output file of a finished job into --out.

    An interrupted download resumes from its .part file when run again.
    Prints each path (--json: {"job_id", "paths": {filename: path}}).
    """

    @with_session
    async def go(session: ChutesSession) -> dict[str, Path]:
        return await download_outputs(session.job(job_id), out, overwrite)

    paths = run_async(go(**conn))
    listed = paths_json(paths)
    emit({"job_id": job_id, "paths": listed}, as_json, "\n".join(listed.values()))


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
    if job.failed:
        fail(describe_job_failure(job), EXIT_JOB_FAILED)


# -- bulk --------------------------------------------------------------------------------


def read_inputs(source: str) -> list[dict[str, Any]]:
    """The job arguments of a JSON Lines file (one object per line; blank lines skipped).

    Read whole before anything is submitted, so a typo on line 5000 submits nothing.
    """
    inputs: list[dict[str, Any]] = []
    for number, line in enumerate(read_text(source, "--inputs").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(
                f"line {number}: not JSON: {exc}", param_hint="--inputs"
            ) from None
        if not isinstance(value, dict):
            raise click.BadParameter(
                f"line {number}: expected a JSON object of job arguments", param_hint="--inputs"
            )
        inputs.append(value)
    return inputs


class WatchedSession(ChutesSession):
    """A session that tells :attr:`on_job` about each job snapshot it receives.

    The bulk command's live counters come from here: ``submit_many`` reports results only
    when an input is done, while creates and polls show jobs being submitted and running.
    """

    on_job: Callable[[Job], None] | None = None

    async def request(self, method: str, path: Any, **kwargs: Any) -> Any:
        """:meth:`ChutesSession.request`, then report a Job answer to :attr:`on_job`."""
        data = await super().request(method, path, **kwargs)
        if self.on_job is not None and isinstance(data, dict) and "job_id" in data:
            try:
                job = job_from_json(data)
            except Exception:  # the caller reads the same answer and reports it
                return data
            self.on_job(job)
        return data


def bulk_result_json(result: BulkResult) -> dict[str, Any]:
    """One bulk result as a JSON object."""
    job = result.job
    return {
        "index": result.index,
        "key": result.key,
        "outcome": result.outcome.value,
        "job_id": result.handle.id if result.handle is not None else None,
        "status": job.status if job is not None else None,
        "resumed": result.resumed,
        "paths": paths_json(dict(result.paths)) if result.paths is not None else None,
        "error": bulk_error_text(result.error) if result.error is not None else None,
    }


def bulk_error_text(error: BaseException) -> str:
    """One line about a bulk item's error."""
    if isinstance(error, JobFailedError):
        return describe_job_failure(error.job)
    if isinstance(error, DownloadOutputsError):
        return one_line(describe_download_failure(error))
    return one_line(str(error) or type(error).__name__)


def bulk_result_text(result: BulkResult) -> str:
    """One line about a bulk result for a person."""
    job = f" job {result.handle.id}" if result.handle is not None else ""
    resumed = " (resumed)" if result.resumed else ""
    error = f": {bulk_error_text(result.error)}" if result.error is not None else ""
    return f"input {result.index}: {result.outcome.value}{job}{resumed}{error}"


class BulkTally:
    """Counts of a bulk run's results, and its exit code."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.errors = 0
        self.failed = 0
        self.resumed = 0

    def add(self, result: BulkResult) -> None:
        """Count one result."""
        self.outcomes[result.outcome.value] += 1
        self.errors += result.error is not None
        self.failed += result.outcome is BulkOutcome.FAILED
        self.resumed += result.resumed

    @property
    def exit_code(self) -> int:
        """3 if an input was not submitted, is unknown, or had an error other than its job
        failing (a wait or a download); else 1 if a job failed; else 0."""
        unsent = self.outcomes[BulkOutcome.NOT_SUBMITTED.value]
        if unsent or self.outcomes[BulkOutcome.UNKNOWN.value] or self.errors > self.failed:
            return EXIT_API_ERROR
        return EXIT_JOB_FAILED if self.failed else EXIT_OK

    def summary(self) -> dict[str, Any]:
        """The summary object (``--json``'s last line)."""
        total = sum(self.outcomes.values())
        counts = {outcome.value: self.outcomes[outcome.value] for outcome in BulkOutcome}
        return {
            "summary": {"total": total, **counts, "errors": self.errors, "resumed": self.resumed},
            "exit_code": self.exit_code,
        }

    def text(self) -> str:
        """The summary line for a person."""
        counts = ", ".join(f"{n} {name}" for name, n in sorted(self.outcomes.items()) if n)
        total = sum(self.outcomes.values())
        return f"{total} inputs: {counts or 'nothing to do'}; {self.errors} with errors"


async def run_bulk(
    conn: dict[str, Any],
    settings: dict[str, Any],
    inputs: list[dict[str, Any]],
    as_json: bool,
) -> BulkTally:
    """Run ``submit_many``, printing each result as it comes and counting them."""
    tally = BulkTally()
    with BulkDisplay() as display:
        session = WatchedSession.from_env(**session_settings(**conn))
        session.on_job = lambda job: display.job_seen(job.job_id, job.state)
        async with session:
            results = session.submit_many(inputs=inputs, **settings)
            async for result in results:
                tally.add(result)
                handle_id = result.handle.id if result.handle is not None else None
                display.result_done(handle_id, ok=result.error is None)
                if as_json:
                    emit_line(bulk_result_json(result))
                else:
                    click.echo(bulk_result_text(result))
    return tally


@command()
@click.argument("chute")
@click.argument("method")
@click.option(
    "--inputs",
    "inputs_source",
    required=True,
    metavar="FILE.jsonl|-",
    help="One JSON object of job arguments per line.",
)
@click.option("--out", type=out_dir_type, default=None, help="Download outputs to DIR/<job_id>/.")
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite ledger: a re-run skips what was done and never creates a job twice.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=8,
    show_default=True,
    help="Creates under way at once.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for each job to finish (--out implies --wait).",
)
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Per-job wait limit.")
@click.option(
    "--resubmit-unknown",
    is_flag=True,
    help="Re-send inputs whose earlier create got no answer (a job may exist for them).",
)
@disk_gb_option()
@connection_options
@json_option
def bulk(
    chute: str,
    method: str,
    inputs_source: str,
    out: Path | None,
    ledger: Path | None,
    concurrency: int,
    wait: bool,
    timeout: float | None,
    resubmit_unknown: bool,
    disk_gb: float | None,
    as_json: bool,
    **conn: Any,
) -> None:
    """Submit one job of CHUTE's METHOD per line of --inputs, with bounded concurrency.

    With --out, outputs go to DIR/<job_id>/. With --ledger, every step is recorded, so a
    re-run (after a crash or Ctrl-C) skips finished inputs and never re-creates a job.
    Prints a line per result and a summary (--json: a JSON object per result, then
    {"summary": ...}). On a terminal, live counters show on stderr. Exit 1 if a job failed,
    3 if an input was not submitted, its create's outcome is unknown, or a wait/download
    failed.
    """
    if out is not None and not wait:
        raise click.UsageError("--out downloads outputs, which needs --wait")
    inputs = read_inputs(inputs_source)
    settings: dict[str, Any] = {
        "chute_id": chute,
        "method": method,
        "concurrency": concurrency,
        "wait": wait,
        "download_to": out,
        "ledger": ledger,
        "disk_gb": disk_gb,
        "wait_timeout": timeout,
        "resubmit_unknown": resubmit_unknown,
    }
    tally = run_async(
        run_bulk(conn, settings, inputs, as_json),
        interrupted="interrupted; the ledger records every step: run the same command again "
        "to resume",
    )
    if as_json:
        emit_line(tally.summary())
    else:
        click.echo(tally.text())
    sys.exit(tally.exit_code)


if __name__ == "__main__":
    main()
