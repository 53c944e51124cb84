"""Ledger write throughput: group commit vs. one commit per write (not a test).

N keys x 2 writes each (``mark_creating`` then ``mark_submitted``, as a bulk run does) from
C concurrent coroutines, every write durable (WAL, ``synchronous=FULL``) before it returns.
``max_batch=1`` forces one transaction, hence one fsync, per write. Also reports the longest
event-loop stall seen by a 1 ms ticker while the writes ran.

    /work/venv/bin/python benchmarks/bench_ledger.py [--keys 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from chutes_jobs.bulk.ledger import Ledger


async def _writer(ledger: Ledger, keys: list[str]) -> None:
    while keys:
        key = keys.pop()
        await ledger.mark_creating(key, int(key[1:]))
        await ledger.mark_submitted(key, f"job-{key}")


async def _longest_stall(stop: asyncio.Event) -> float:
    longest, last = 0.0, time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        longest, last = max(longest, now - last - 0.001), now
    return longest


async def run(path: Path, keys: int, concurrency: int, max_batch: int) -> dict[str, float]:
    """Time ``keys`` x 2 writes from ``concurrency`` coroutines into a fresh ledger."""
    todo = [f"k{i}" for i in range(keys)]
    async with await Ledger.open(path, max_batch=max_batch) as ledger:
        stop = asyncio.Event()
        stall = asyncio.create_task(_longest_stall(stop))
        start = time.perf_counter()
        await asyncio.gather(*(_writer(ledger, todo) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        stop.set()
        writes = 2 * keys
        return {
            "writes/s": writes / elapsed,
            "seconds": elapsed,
            "commits": ledger.commit_count,
            "writes/commit": writes / max(ledger.commit_count, 1),
            "stall ms": 1000 * await stall,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    print(f"{args.keys} keys x 2 writes, {args.concurrency} coroutines, synchronous=FULL, WAL")
    results = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for name, max_batch in (("group commit", 1024), ("commit per write", 1)):
            results[name] = await run(
                Path(tmp, f"{max_batch}.db"), **vars(args), max_batch=max_batch
            )
            cells = "  ".join(f"{k} {v:10.1f}" for k, v in results[name].items())
            print(f"{name:>17}: {cells}")
    ratio = results["group commit"]["writes/s"] / results["commit per write"]["writes/s"]
    print(f"group commit is {ratio:.1f}x the writes/s of one commit per write")


if __name__ == "__main__":
    asyncio.run(main())
