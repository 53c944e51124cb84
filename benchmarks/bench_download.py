"""Download benchmark: chutes-jobs vs curl vs a naive aiohttp client (1 GiB by default).

    /work/venv/bin/python benchmarks/bench_download.py [--size-mib 1024] [--reps 3] [--matrix]

The server (web.FileResponse over a temp file) runs in a subprocess; every Python client runs
in its own subprocess too, so CPU and peak RSS are the client's alone. Each client is run
``--reps`` times, interleaved; the run with the median speed is printed. ``--matrix`` adds
chutes-jobs (with fsync) with one knob of ``chutes_jobs.transfer`` changed each: no
write-behind, asyncio's default socket reads, other read-buffer / write-batch sizes (the
figures behind the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiofiles
import aiohttp
from _common import (
    MIB,
    Measure,
    best_runs,
    make_file,
    median_run,
    print_all_runs,
    print_table,
    run_client,
    run_external,
    start_server,
)

from chutes_jobs import transfer


async def chutes_jobs_client(url: str, out: Path, fsync: bool) -> dict[str, Any]:
    identity = transfer.PartIdentity("bench", "file", out.name)
    async with aiohttp.ClientSession() as session, Measure() as m:
        partial = await transfer.Partial.claim(out.parent, out, identity, overwrite=True)
        try:
            async with session.get(url) as response:
                response.raise_for_status()
                plan = transfer.plan_body(response, 0)
                writer = await partial.begin(plan)
                end = await transfer.stream_to_part(response, writer, plan=plan, filename=out.name)
            transfer.check_complete(plan, end, out.name)
            t0 = time.perf_counter()
            await partial.publish(size=end, overwrite=True, fsync=fsync)
            finalize_s = time.perf_counter() - t0
        finally:
            await partial.close()
    return {"measure": m, "finalize_s": finalize_s}


async def naive_client(url: str, out: Path) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        Measure() as m,
        session.get(url) as response,
        aiofiles.open(out, "wb") as f,
    ):
        async for chunk in response.content.iter_chunked(MIB):
            await f.write(chunk)
    return {"measure": m}


def client_main(name: str, url: str, out: str) -> None:
    opts: dict[str, Any] = json.loads(name[name.index("{") :]) if "{" in name else {}
    for key, value in opts.items():  # matrix: override one of the transfer constants
        for module in (transfer.partfile, transfer.receive):
            if hasattr(module, key):
                setattr(module, key, value)
    if name.startswith("naive"):
        result = asyncio.run(naive_client(url, Path(out)))
    else:
        fsync = "fsync" in name or name.startswith("cj ")
        result = asyncio.run(chutes_jobs_client(url, Path(out), fsync=fsync))
    measure = result.pop("measure")
    print(json.dumps({**measure.result(os.path.getsize(out)), **result}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--matrix", action="store_true")
    parser.add_argument("--dir", help="folder for the files (default: a temp dir on disk)")
    args = parser.parse_args()
    size = args.size_mib * MIB
    clients = ["chutes-jobs", "chutes-jobs +fsync", "naive aiohttp"]
    if args.matrix:
        variants: list[dict[str, int]] = [
            {"WRITE_BEHIND": 0},
            {"SOCKET_READ": 0},
            {"WRITE_BATCH": 1 * MIB},
            {"WRITE_BATCH": 4 * MIB},
            {"READ_BUFFER": 256 * 1024},
        ]
        clients += [f"cj {json.dumps(opts)}" for opts in variants]
    with tempfile.TemporaryDirectory(prefix="bench-dl-", dir=args.dir) as tmp:
        src = make_file(Path(tmp) / "src.bin", size)
        out = Path(tmp) / "out.bin"
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*clients, "curl"]}
        with start_server("download", src) as base:
            url = f"{base}/file"
            for _ in range(args.reps):
                for name in clients:
                    runs[name].append(run_client(__file__, name, url, str(out)))
                    os.unlink(out)
                runs["curl"].append(run_external(["curl", "-s", "-o", str(out), url], size))
                assert out.stat().st_size == size
                os.unlink(out)
    rows = {name: median_run(r) for name, r in runs.items()}
    best = best_runs(runs)
    where = args.dir or tempfile.gettempdir()
    title = f"download {args.size_mib} MiB to {where}, median of {args.reps} (loopback)"
    print_table(title, rows, ["naive aiohttp", "curl"])
    print_table("best run of each", best, ["naive aiohttp", "curl"])
    fin = [r["finalize_s"] for r in runs["chutes-jobs +fsync"]]
    fin0 = [r["finalize_s"] for r in runs["chutes-jobs"]]
    print(
        f"\npublish(): fsync {statistics.median(fin):.3f} s,"
        f" without {statistics.median(fin0):.4f} s"
    )
    print_all_runs(runs)


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_main(*sys.argv[2:5])
    else:
        main()
