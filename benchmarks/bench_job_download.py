"""Job output download benchmark: ``JobHandle.download`` vs curl vs a naive aiohttp client.

    /work/venv/bin/python benchmarks/bench_job_download.py [--size-mib 1024] [--reps 3]
        [--dir DIR] [--verify]

One emulator (``python -m chutes_jobs.emulator``) runs in a subprocess and serves one output
file of ``--size-mib`` MiB: a ``demo.files`` job is created through it, awaited, and then the
same file id is downloaded by each client, over loopback, through the real download route
(auth, routing, ``Content-Disposition``, sendfile). Every Python client runs in its own
subprocess, so CPU seconds and peak RSS growth are that client's alone (measured as in
``benchmarks/_common.py``: ``getrusage``, VmHWM after a reset, a 1 ms ticker for the longest
event-loop stall). Clients run interleaved, ``--reps`` times each; the median-speed run of
each is printed, then the best.

Clients: ``chutes-jobs`` (``JobHandle.download``, ``fsync=True``, the default: the file is
flushed to disk before its rename), ``chutes-jobs fsync=off`` (``fsync=False``), ``naive
aiohttp`` (``iter_chunked(1 MiB)`` written with aiofiles) and ``curl -s -o``. Only the
chutes-jobs client with fsync pays for a crash-proof file, so the fsync row is the one the
targets are checked against; the fsync=off row compares like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiofiles
import aiohttp
from _common import (
    GIB,
    MIB,
    Measure,
    best_runs,
    median_run,
    print_all_runs,
    print_table,
    run_client,
    run_external,
    speed,
)

from chutes_jobs import ChutesSession, OutputFile
from chutes_jobs.demo import sha256_file
from chutes_jobs.polling import PollPolicy

#: The subprocess clients read the API key from here (never from argv).
KEY_ENV = "BENCH_CHUTES_API_KEY"
FILENAME = "file_000.bin"
TARGETS = {"x naive": 1.2, "CPU s/GiB": 0.7, "RSS+ MiB": 32.0, "stall ms": 20.0}


# ----------------------------------------------------------------------------- clients


async def chutes_jobs_client(
    base: str, job_id: str, file_id: str, out: Path, fsync: bool
) -> Measure:
    async with ChutesSession(base_url=base, api_key=os.environ[KEY_ENV]) as session:
        handle = session.job(job_id)
        file = OutputFile(file_id=file_id, filename=FILENAME, uploaded=True)
        async with Measure() as m:
            await handle.download(file, out, fsync=fsync)
    return m


async def naive_client(base: str, job_id: str, file_id: str, out: Path) -> Measure:
    url = f"{base}/jobs/{job_id}/download/{file_id}"
    headers = {"Authorization": os.environ[KEY_ENV]}
    async with (
        aiohttp.ClientSession() as session,
        Measure() as m,
        session.get(url, headers=headers) as response,
        aiofiles.open(out, "wb") as f,
    ):
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(MIB):
            await f.write(chunk)
    return m


def client_main(name: str, base: str, job_id: str, file_id: str, out: str) -> None:
    if name == "naive aiohttp":
        measure = asyncio.run(naive_client(base, job_id, file_id, Path(out)))
    else:
        fsync = "fsync=off" not in name
        measure = asyncio.run(chutes_jobs_client(base, job_id, file_id, Path(out), fsync))
    print(json.dumps(measure.result(os.path.getsize(out))))


# ----------------------------------------------------------------------------- the server


@contextmanager
def emulator(data_dir: Path) -> Iterator[tuple[str, str]]:
    """Run ``python -m chutes_jobs.emulator`` in a subprocess; yields (base URL, API key)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chutes_jobs.emulator", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = re.search(r"at (\S+)", proc.stdout.readline())
        key = re.search(r"API key: (\S+)", proc.stdout.readline())
        if base is None or key is None:
            raise RuntimeError("the emulator did not print its base URL and API key")
        yield base.group(1), key.group(1)
    finally:
        proc.terminate()
        proc.wait()


async def make_job(base: str, key: str, size: int) -> tuple[str, str, str]:
    """Create a ``demo.files`` job of one ``size``-byte file; (job id, file id, sha256)."""
    async with ChutesSession(base_url=base, api_key=key, request_timeout=600) as session:
        handle = await session.create_job("demo", "files", {"sizes": [size]})
        job = await handle.wait(poll=PollPolicy(initial=0.2, maximum=1.0))
        (file,) = job.output_files.values()
        return job.job_id, file.file_id, job.result["files"][FILENAME]


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", help="folder for the files (default: a temp dir on disk)")
    parser.add_argument("--verify", action="store_true", help="sha256 of every download")
    args = parser.parse_args()
    size = args.size_mib * MIB
    clients = ["chutes-jobs", "chutes-jobs fsync=off", "naive aiohttp"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*clients, "curl"]}
    with tempfile.TemporaryDirectory(prefix="bench-job-dl-", dir=args.dir) as tmp:
        out = Path(tmp) / "out.bin"
        header_file = Path(tmp) / "auth-header"
        with emulator(Path(tmp) / "emulator") as (base, key):
            job_id, file_id, digest = asyncio.run(make_job(base, key, size))
            os.environ[KEY_ENV] = key
            header_file.write_text(f"Authorization: {key}\n")
            url = f"{base}/jobs/{job_id}/download/{file_id}"
            curl = ["curl", "-s", "-f", "-o", str(out), "-H", f"@{header_file}", url]
            for _ in range(args.reps):
                for name in clients:
                    runs[name].append(run_client(__file__, name, base, job_id, file_id, str(out)))
                    check(out, size, digest, args.verify)
                runs["curl"].append(run_external(curl, size))
                check(out, size, digest, args.verify)
    rows = {name: median_run(r) for name, r in runs.items()}
    best = best_runs(runs)
    where = args.dir or tempfile.gettempdir()
    title = (
        f"JobHandle.download of a {args.size_mib} MiB output from the emulator (subprocess) to "
        f"{where}, loopback, median of {args.reps}"
    )
    print_table(title, rows, ["naive aiohttp", "curl"])
    print_table("best run of each", best, ["naive aiohttp", "curl"])
    print_targets(rows)
    print_all_runs(runs)


def check(out: Path, size: int, digest: str, verify: bool) -> None:
    assert out.stat().st_size == size, f"{out} holds {out.stat().st_size} bytes, not {size}"
    if verify:
        assert sha256_file(out) == digest, "the downloaded bytes differ"
    out.unlink()


def print_targets(rows: dict[str, dict[str, Any]]) -> None:
    ours, naive = rows["chutes-jobs"], rows["naive aiohttp"]
    figures = {
        "x naive": speed(ours) / speed(naive),
        "CPU s/GiB": ours["cpu"] / (ours["bytes"] / GIB),
        "RSS+ MiB": ours["rss_growth"] / MIB,
        "stall ms": ours["stall"] * 1000,
    }
    print("\ntargets (chutes-jobs, fsync on, median run):")
    for name, target in TARGETS.items():
        value = figures[name]
        met = value >= target if name == "x naive" else value <= target
        bound = ">=" if name == "x naive" else "<="
        print(
            f"  {name:<10} {value:8.2f}  target {bound} {target:<5}  {'met' if met else 'MISSED'}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_main(*sys.argv[2:7])
    else:
        main()
