"""``python -m chutes_jobs.emulator``: serve the emulator until Ctrl-C (exit 130) or SIGTERM
(exit 0), like ``chutes-jobs emulator``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from .emulator import Emulator

__all__ = ["main", "serve"]

#: The exit code after Ctrl-C (128 + SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130


def print_banner(emulator: Emulator) -> None:
    """Print the base URL, API key and demo chute of a started emulator on stdout."""
    sys.stdout.write(
        f"Chutes Jobs emulator at {emulator.base_url}\n"
        f"API key: {emulator.api_key}\n"
        f"demo chute: {emulator.demo_chute_id} (name 'demo')\n"
    )
    sys.stdout.flush()


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Path | None = None,
    range_support: bool = True,
    live_quirks: bool = False,
    expose_status: bool = False,
    on_ready: Callable[[Emulator], None] = print_banner,
) -> None:
    """Start an emulator, call ``on_ready`` with it (default: print its base URL and API
    key), and serve until SIGTERM (then return) or cancellation (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        emulator = Emulator(
            host=host,
            port=port,
            data_dir=data_dir,
            range_support=range_support,
            live_quirks=live_quirks,
            expose_status=expose_status,
        )
        async with emulator:
            on_ready(emulator)
            await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve; exit 0 on SIGTERM, 130 on Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m chutes_jobs.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--no-range", action="store_true", help="answer Range with 200, as live")
    parser.add_argument("--live-quirks", action="store_true", help="reproduce the live bugs")
    parser.add_argument(
        "--expose-status", action="store_true", help="add status and error_detail to job JSON"
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                data_dir=args.data_dir,
                range_support=not args.no_range,
                live_quirks=args.live_quirks,
                expose_status=args.expose_status,
            )
        )
    except KeyboardInterrupt:
        sys.stderr.write("emulator stopped\n")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
