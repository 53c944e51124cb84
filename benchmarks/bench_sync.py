"""The blocking API's price: ``chutes_jobs.sync`` against the async API (a script, not a test).

    /work/venv/bin/python benchmarks/bench_sync.py [--creates 2000] [--downloads 200]
        [--size-mib 4] [--reps 3] [--dir DIR]

The emulator (``python -m chutes_jobs.emulator``) runs in a subprocess, so it does not share
the measured client's GIL, started afresh for every client run (each meets the same server
state). Each client runs in its own subprocess (its peak RSS is its own), ``--reps`` times,
interleaved, and does two phases on one session:

0. ``--calls`` calls that do no I/O (``output_file`` given an ``OutputFile``): the price of
   one call through each path, a thread hop where there is one;
1. ``--creates`` sequential ``create_job`` calls (``demo.sleep`` jobs of an hour: the
   emulator keeps them running and does nothing more for them meanwhile);
2. ``--downloads`` concurrent downloads of one ``--size-mib`` MiB output (``fsync=False``:
   the disk is not what is measured), each to its own file: the async client gathers them, the
   blocking ones run them from as many threads (a ``ThreadPoolExecutor``), the way blocking
   code gets concurrency.

Clients: ``async`` (``chutes_jobs.ChutesSession``), ``sync`` (``chutes_jobs.sync``: one event
loop in a daemon thread, one thread hop per call) and, for the record, ``anyio portal``: the
async session driven through ``anyio.from_thread.start_blocking_portal`` (``portal.call``),
the primitive measured and not taken (see ``chutes_jobs/_loop_thread.py``); skipped when anyio
is not installed. Printed: wall time per call (median run), the ratio to ``async`` (target:
sync <= 1.10x) and the peak RSS growth of each phase (target: sync <= async + 10 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
#: The subprocess clients read the API key from here (never from argv).
KEY_ENV = "BENCH_CHUTES_API_KEY"
SLEEP_JOB = {"seconds": 3600}
WARM_UP = 50
TARGET_RATIO = 1.10
TARGET_RSS_MIB = 10.0
CLIENTS = ["async", "sync", "anyio portal"]


# ----------------------------------------------------------------------------- measuring


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Phase:
    """Wall time and peak RSS growth of one phase (VmHWM reset first, Linux >= 4.0)."""

    def __enter__(self) -> Phase:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        self.rss0 = _vm("VmRSS")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.rss_growth = _vm("VmHWM") - self.rss0


# ----------------------------------------------------------------------------- clients


def async_client(base: str, spec: dict[str, Any], out: Path) -> dict[str, float]:
    from chutes_jobs import ChutesSession, OutputFile

    file = OutputFile(file_id=spec["file_id"], filename=spec["filename"], uploaded=True)

    async def run() -> dict[str, float]:
        async with ChutesSession(base_url=base, api_key=os.environ[KEY_ENV]) as s:
            for _ in range(WARM_UP):
                await s.create_job("demo", "sleep", SLEEP_JOB)
            handle = s.job(spec["job_id"])
            await handle.download(file, out / "warm-up", fsync=False)
            with Phase() as calls:
                for _ in range(spec["calls"]):
                    await handle.output_file(file)
            with Phase() as creates:
                for _ in range(spec["creates"]):
                    await s.create_job("demo", "sleep", SLEEP_JOB)
            with Phase() as downloads:
                await asyncio.gather(
                    *(
                        handle.download(file, out / str(i), fsync=False)
                        for i in range(spec["downloads"])
                    )
                )
        return _figures(calls, creates, downloads)

    return asyncio.run(run())


def sync_client(base: str, spec: dict[str, Any], out: Path) -> dict[str, float]:
    from chutes_jobs import OutputFile
    from chutes_jobs.sync import ChutesSession

    file = OutputFile(file_id=spec["file_id"], filename=spec["filename"], uploaded=True)
    with ChutesSession(base_url=base, api_key=os.environ[KEY_ENV]) as s:
        for _ in range(WARM_UP):
            s.create_job("demo", "sleep", SLEEP_JOB)
        handle = s.job(spec["job_id"])
        handle.download(file, out / "warm-up", fsync=False)
        with Phase() as calls:
            for _ in range(spec["calls"]):
                handle.output_file(file)
        with Phase() as creates:
            for _ in range(spec["creates"]):
                s.create_job("demo", "sleep", SLEEP_JOB)
        with Phase() as downloads:
            _in_threads(
                spec["downloads"], lambda i: handle.download(file, out / str(i), fsync=False)
            )
    return _figures(calls, creates, downloads)


def portal_client(base: str, spec: dict[str, Any], out: Path) -> dict[str, float]:
    from anyio.from_thread import start_blocking_portal

    from chutes_jobs import ChutesSession, OutputFile

    file = OutputFile(file_id=spec["file_id"], filename=spec["filename"], uploaded=True)
    s = ChutesSession(base_url=base, api_key=os.environ[KEY_ENV])
    with start_blocking_portal() as portal:
        portal.call(s.__aenter__)
        for _ in range(WARM_UP):
            portal.call(s.create_job, "demo", "sleep", SLEEP_JOB)
        handle = s.job(spec["job_id"])
        download = functools.partial(handle.download, file, fsync=False)
        portal.call(download, out / "warm-up")
        with Phase() as calls:
            for _ in range(spec["calls"]):
                portal.call(handle.output_file, file)
        with Phase() as creates:
            for _ in range(spec["creates"]):
                portal.call(s.create_job, "demo", "sleep", SLEEP_JOB)
        with Phase() as downloads:
            _in_threads(spec["downloads"], lambda i: portal.call(download, out / str(i)))
        portal.call(s.close)
    return _figures(calls, creates, downloads)


def _in_threads(n: int, work: Callable[[int], Any]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        for _ in pool.map(work, range(n)):
            pass


def _figures(calls: Phase, creates: Phase, downloads: Phase) -> dict[str, float]:
    return {
        "call_wall": calls.wall,
        "create_wall": creates.wall,
        "create_rss": creates.rss_growth,
        "download_wall": downloads.wall,
        "download_rss": downloads.rss_growth,
    }


CLIENT_FUNCTIONS = {"async": async_client, "sync": sync_client, "anyio portal": portal_client}


def client_main(name: str, base: str, spec_json: str, out: str) -> None:
    figures = CLIENT_FUNCTIONS[name](base, json.loads(spec_json), Path(out))
    print(json.dumps(figures))


def run_client(name: str, base: str, spec: dict[str, Any], out: Path) -> dict[str, float]:
    out.mkdir()
    try:
        done = subprocess.run(
            [sys.executable, __file__, "client", name, base, json.dumps(spec), str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- the emulator


@contextlib.contextmanager
def emulator(data_dir: Path) -> Iterator[tuple[str, str]]:
    """``python -m chutes_jobs.emulator`` in a subprocess; yields (base URL, API key)."""
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


def make_output(base: str, key: str, size: int) -> dict[str, str]:
    """A finished ``demo.files`` job with one ``size``-byte output: its ids and name."""
    from chutes_jobs.sync import ChutesSession, PollPolicy

    with ChutesSession(base_url=base, api_key=key) as s:
        job = s.create_job("demo", "files", {"sizes": [size]}).wait(
            poll=PollPolicy(initial=0.1, maximum=0.5)
        )
    (file,) = job.output_files.values()
    return {"job_id": job.job_id, "file_id": file.file_id, "filename": file.filename}


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--downloads", type=int, default=200)
    parser.add_argument("--size-mib", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", help="folder for the files (default: a temp dir on disk)")
    args = parser.parse_args()
    clients = [c for c in CLIENTS if c != "anyio portal" or importlib.util.find_spec("anyio")]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=args.dir) as tmp:
        for rep in range(args.reps):
            order = clients[rep % len(clients) :] + clients[: rep % len(clients)]
            for name in order:
                runs[name].append(run_on_fresh_emulator(name, Path(tmp), args))
    report(runs, args)


def run_on_fresh_emulator(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    """One client's run on an emulator of its own: every run meets the same server state."""
    with emulator(tmp / "emulator") as (base, key):
        spec = {
            **make_output(base, key, args.size_mib * MIB),
            "calls": args.calls,
            "creates": args.creates,
            "downloads": args.downloads,
        }
        os.environ[KEY_ENV] = key
        try:
            return run_client(name, base, spec, tmp / "out")
        finally:
            shutil.rmtree(tmp / "emulator", ignore_errors=True)


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    ref = med["async"]
    print(
        f"\n{args.creates} sequential create_job, then {args.downloads} concurrent downloads of "
        f"{args.size_mib} MiB, emulator in a subprocess, median of {args.reps} interleaved runs "
        f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    head = f"{'client':<14}{'us/call':>9}{'us/create':>11}{'x async':>9}{'RSS+ MiB':>10}"
    head += f"{'ms/download':>13}{'x async':>9}{'RSS+ MiB':>10}"
    print(head)
    print("-" * len(head))
    for name, m in med.items():
        call_us = m["call_wall"] / args.calls * 1e6
        create_us = m["create_wall"] / args.creates * 1e6
        download_ms = m["download_wall"] / args.downloads * 1e3
        create_ratio = m["create_wall"] / ref["create_wall"]
        print(
            f"{name:<14}{call_us:>9.1f}{create_us:>11.0f}{create_ratio:>9.3f}"
            f"{m['create_rss'] / MIB:>10.1f}{download_ms:>13.2f}"
            f"{m['download_wall'] / ref['download_wall']:>9.3f}{m['download_rss'] / MIB:>10.1f}"
        )
    sync = med["sync"]
    print("\ntargets (sync against async, median runs):")
    for what in ("create", "download"):
        ratio = sync[f"{what}_wall"] / ref[f"{what}_wall"]
        extra = (sync[f"{what}_rss"] - ref[f"{what}_rss"]) / MIB
        print(
            f"  {what:<9} time x{ratio:.3f} (target <= {TARGET_RATIO}: "
            f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}), peak RSS {extra:+.1f} MiB "
            f"(target <= +{TARGET_RSS_MIB:.0f}: {'met' if extra <= TARGET_RSS_MIB else 'MISSED'})"
        )
    hop = (sync["call_wall"] - ref["call_wall"]) / args.calls * 1e6
    print(f"  one call costs {hop:.0f} us more through the sync API than awaited (no I/O)")
    print("\nall runs (create s, download s, RSS+ MiB create/download):")
    for name, rs in runs.items():
        cells = [
            f"{r['create_wall']:.2f}/{r['download_wall']:.2f}/"
            f"{r['create_rss'] / MIB:.0f}/{r['download_rss'] / MIB:.0f}"
            for r in rs
        ]
        print(f"  {name:<14}" + "  ".join(cells))


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_main(*sys.argv[2:6])
    else:
        main()
