"""Commands that need no account: ``demo`` and ``emulator`` (the embedded Jobs API emulator)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._app import command
from ._exit import EXIT_JOB_FAILED, run_async
from ._options import json_option, out_dir_type
from ._output import emit, emit_line, say

if TYPE_CHECKING:
    from ..emulator import Emulator


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
    from ..demo import run_demo  # imports the emulator: only for this command

    report = run_async(run_demo(out, size_mib=size_mib, say=say))
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
    from ..emulator.__main__ import serve

    def ready(emulator: Emulator) -> None:
        info = {
            "base_url": emulator.base_url,
            "api_key": emulator.api_key,
            "demo_chute_id": emulator.demo_chute_id,
        }
        emit_line(info, as_json, emulator_banner(info))
        sys.stdout.flush()

    await serve(**options, on_ready=ready)


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
