"""The fault suite's figures, at full size: one line per figure.

    python -m benchmarks.faults [--seed N] [--only drops,names] [--reduced]

Runs every scenario of ``benchmarks/_faults`` (the same code ``pytest -m faults`` runs at
reduced size) against the emulator over loopback, and prints each figure with the claim it
is held to; a line ending in ``FAILED: ...`` misses its claim, and the exit status is then 1.
``--only`` runs some scenarios (``secrets`` then sweeps only what those produced). Needs the
``test`` extra (hypothesis, bittensor-wallet). Takes about five minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from types import ModuleType

from benchmarks._faults import (
    bursts,
    cancel,
    disk_full,
    drops,
    hostile,
    load,
    lost_creates,
    secrets,
)
from benchmarks._faults.report import Figure, Sweep

#: name -> scenario module, in running order: the load first, while the process's memory
#: holds nothing freed by other scenarios that its growth could hide in; the secret sweep
#: last, since it reports on everything the others produced.
SCENARIOS: dict[str, ModuleType] = {
    "load": load,
    "drops": drops,
    "bursts": bursts,
    "lost": lost_creates,
    "names": hostile,
    "cancel": cancel,
    "disk-full": disk_full,
    "secrets": secrets,
}


async def main(names: list[str], *, seed: int, reduced: bool) -> list[Figure]:
    """Run the scenarios ``names`` in order, printing each figure as it comes."""
    sweep = Sweep()
    figures: list[Figure] = []
    with sweep.capture():
        for name in names:
            module = SCENARIOS[name]
            began = time.perf_counter()
            found = await module.run(module.REDUCED if reduced else module.FULL, sweep, seed=seed)
            for figure in found:
                print(figure.line(), flush=True)
            print(f"{'':<10} ({name}: {time.perf_counter() - began:.1f} s)", flush=True)
            figures += found
    return figures


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every scenario (default 0)")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--reduced", action="store_true", help="the test suite's sizes")
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    return args


if __name__ == "__main__":
    options = _parse(None)
    results = asyncio.run(main(options.names, seed=options.seed, reduced=options.reduced))
    sys.exit(0 if all(f.ok for f in results) else 1)
