"""``python -m chutes_jobs.emulator``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from .emulator import Emulator

__all__ = ["main", "serve"]


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Path | None = None,
    range_support: bool = True,
    live_quirks: bool = False,
) -> None:
    """Start an emulator, print its base URL and API key, and serve until cancelled."""
    emulator = Emulator(
        host=host,
        port=port,
        data_dir=data_dir,
        range_support=range_support,
        live_quirks=live_quirks,
    )
    async with emulator:
        sys.stdout.write(
            f"Chutes Jobs emulator at {emulator.base_url}\n"
            f"API key: {emulator.api_key}\n"
            f"demo chute: {emulator.demo_chute_id} (name 'demo')\n"
        )
        sys.stdout.flush()
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m chutes_jobs.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--no-range", action="store_true", help="answer Range with 200, as live")
    parser.add_argument("--live-quirks", action="store_true", help="reproduce the live bugs")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                data_dir=args.data_dir,
                range_support=not args.no_range,
                live_quirks=args.live_quirks,
            )
        )


if __name__ == "__main__":
    main()
