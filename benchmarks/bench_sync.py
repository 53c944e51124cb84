"""The blocking API's price: ``chutes_jobs.sync`` against the async API (a script, not a test).

    /work/venv/bin/python benchmarks/bench_sync.py [--creates 2000] [--downloads 200]
        [--size-mib 4] [--calls 20000] [--rounds 5] [--memory-runs 5] [--dir DIR]

The emulator (``python -m chutes_jobs.emulator``) runs in a subprocess, so it does not share
the measured clients' GIL. Three clients, each with one session:

* ``async``: ``chutes_jobs.ChutesSession``, awaited;
* ``sync``: ``chutes_jobs.sync.ChutesSession`` (one event loop in a daemon thread, one thread
  hop per call); concurrent downloads run from as many threads (a ``ThreadPoolExecutor``), the
  way blocking code gets concurrency;
* ``anyio portal``, for the record: the async session driven through
  ``anyio.from_thread.start_blocking_portal`` (``portal.call``), the primitive measured and not
  taken (see ``chutes_jobs/_loop_thread.py``); left out when anyio is not installed.

Time, in one subprocess holding all three clients, interleaved so that the machine's load
drifts alike for all (on a shared machine, runs minutes apart differ by 30-50%):

0. ``--calls`` calls that do no I/O (``output_file`` given an ``OutputFile``), alternating
   clients call by call: the price of one call, a thread hop where there is one;
1. ``--creates`` sequential ``create_job`` calls (``demo.sleep`` jobs of an hour: the emulator
   keeps them and does nothing more for them), alternating call by call;
2. ``--rounds`` rounds of ``--downloads`` concurrent downloads of one ``--size-mib`` MiB output
   (``fsync=False``: the disk is not what is measured), alternating round by round.

Memory: each client then runs phases 1 and 2 alone in a subprocess of its own, on a fresh
emulator, and reports the peak RSS growth of each phase (VmHWM after a reset), ``--memory-runs``
times, the clients' runs interleaved; the median is printed, and the range of the runs (one
run's download figure swings by +-20 MiB).

Printed: the load average before and after; mean and median time per call of each client, and
their ratios to ``async`` (target: sync <= 1.10x, judged on the mean: the total time of the
calls); the peak RSS growth (target: sync <= async + 10 MiB, judged on the medians).
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

from _common import proc_status, reset_peak_rss

MIB = 1024 * 1024
#: The subprocess clients read the API key from here (never from argv).
KEY_ENV = "BENCH_CHUTES_API_KEY"
SLEEP_JOB = {"seconds": 3600}
WARM_UP = 50
TARGET_RATIO = 1.10
TARGET_RSS_MIB = 10.0
CLIENTS = ["async", "sync", "anyio portal"]


# ----------------------------------------------------------------------------- clients


class AsyncClient:
    """The async API, awaited. Every client has these three coroutines and ``close``."""

    def __init__(self, base: str, spec: dict[str, Any]) -> None:
        from chutes_jobs import ChutesSession, OutputFile

        self.session = ChutesSession(base_url=base, api_key=os.environ[KEY_ENV])
        self.handle = self.session.job(spec["job_id"])
        self.file = OutputFile(file_id=spec["file_id"], filename=spec["filename"], uploaded=True)

    async def call(self) -> None:
        await self.handle.output_file(self.file)

    async def create(self) -> None:
        await self.session.create_job("demo", "sleep", SLEEP_JOB)

    async def downloads(self, n: int, out: Path) -> None:
        await asyncio.gather(
            *(self.handle.download(self.file, out / str(i), fsync=False) for i in range(n))
        )

    async def close(self) -> None:
        await self.session.close()


class SyncClient:
    """The blocking API, called (from the measuring coroutine: it holds that loop meanwhile)."""

    def __init__(self, base: str, spec: dict[str, Any]) -> None:
        from chutes_jobs import OutputFile
        from chutes_jobs.sync import ChutesSession

        self.session = ChutesSession(base_url=base, api_key=os.environ[KEY_ENV])
        self.handle = self.session.job(spec["job_id"])
        self.file = OutputFile(file_id=spec["file_id"], filename=spec["filename"], uploaded=True)

    async def call(self) -> None:
        self.handle.output_file(self.file)

    async def create(self) -> None:
        self.session.create_job("demo", "sleep", SLEEP_JOB)

    async def downloads(self, n: int, out: Path) -> None:
        download = functools.partial(self.handle.download, self.file, fsync=False)
        _in_threads(n, lambda i: download(out / str(i)))

    async def close(self) -> None:
        self.session.close()


class PortalClient:
    """The async API through an anyio blocking portal (its own event loop thread)."""

    def __init__(self, base: str, spec: dict[str, Any]) -> None:
        from anyio.from_thread import start_blocking_portal

        from chutes_jobs import ChutesSession, OutputFile

        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.session = ChutesSession(base_url=base, api_key=os.environ[KEY_ENV])
        self.handle = self.session.job(spec["job_id"])
        self.file = OutputFile(file_id=spec["file_id"], filename=spec["filename"], uploaded=True)

    async def call(self) -> None:
        self.portal.call(self.handle.output_file, self.file)

    async def create(self) -> None:
        self.portal.call(self.session.create_job, "demo", "sleep", SLEEP_JOB)

    async def downloads(self, n: int, out: Path) -> None:
        download = functools.partial(self.handle.download, self.file, fsync=False)
        _in_threads(n, lambda i: self.portal.call(download, out / str(i)))

    async def close(self) -> None:
        self.portal.call(self.session.close)
        self._portal_cm.__exit__(None, None, None)


CLIENT_CLASSES = {"async": AsyncClient, "sync": SyncClient, "anyio portal": PortalClient}


def _in_threads(n: int, work: Callable[[int], Any]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        for _ in pool.map(work, range(n)):
            pass


async def _warm_up(client: Any, out: Path) -> None:
    for _ in range(WARM_UP):
        await client.create()
    await client.downloads(2, out)
    _empty(out)


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


# ----------------------------------------------------------------------------- timing


async def time_interleaved(names: list[str], base: str, spec: dict[str, Any], out: Path) -> Any:
    """Every client in this process, alternating: ``{phase: {client: [seconds per call]}}``."""
    clients = {name: CLIENT_CLASSES[name](base, spec) for name in names}
    times: dict[str, dict[str, list[float]]] = {
        phase: {name: [] for name in names} for phase in ("call", "create", "download")
    }
    for client in clients.values():
        await _warm_up(client, out)

    async def alternate(phase: str, count: int, step: Callable[[Any], Any]) -> None:
        for i in range(count):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                t0 = time.perf_counter()
                await step(clients[name])
                times[phase][name].append(time.perf_counter() - t0)
                if phase == "download":
                    _empty(out)

    await alternate("call", spec["calls"], lambda c: c.call())
    await alternate("create", spec["creates"], lambda c: c.create())
    await alternate("download", spec["rounds"], lambda c: c.downloads(spec["downloads"], out))
    for client in clients.values():
        await client.close()
    return times


# ----------------------------------------------------------------------------- memory


@contextlib.contextmanager
def peak_rss_growth(into: dict[str, float], key: str) -> Iterator[None]:
    """Record the peak RSS growth over the block (VmHWM reset first, Linux >= 4.0)."""
    reset_peak_rss()
    rss0 = proc_status("VmRSS")
    yield
    into[key] = proc_status("VmHWM") - rss0


async def measure_memory(name: str, base: str, spec: dict[str, Any], out: Path) -> Any:
    """One client alone: peak RSS growth of the creates, then of one round of downloads."""
    client = CLIENT_CLASSES[name](base, spec)
    await _warm_up(client, out)
    rss: dict[str, float] = {}
    with peak_rss_growth(rss, "create"):
        for _ in range(spec["creates"]):
            await client.create()
    with peak_rss_growth(rss, "download"):
        await client.downloads(spec["downloads"], out)
    await client.close()
    return rss


def subprocess_main(what: str, base: str, spec_json: str, out: str) -> None:
    spec = json.loads(spec_json)
    if what == "interleaved":
        result = asyncio.run(time_interleaved(spec["clients"], base, spec, Path(out)))
    else:
        result = asyncio.run(measure_memory(what, base, spec, Path(out)))
    print(json.dumps(result))


def in_subprocess(what: str, spec: dict[str, Any], tmp: Path) -> Any:
    """Run ``what`` in a subprocess, on an emulator of its own; return what it printed."""
    out = tmp / "out"
    out.mkdir()
    try:
        with emulator(tmp / "emulator") as (base, key):
            spec = {**spec, **make_output(base, key, spec["size"])}
            os.environ[KEY_ENV] = key
            done = subprocess.run(
                [sys.executable, __file__, "run", what, base, json.dumps(spec), str(out)],
                check=True,
                capture_output=True,
                text=True,
            )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(tmp / "emulator", ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-runs", type=int, default=5)
    parser.add_argument("--dir", help="folder for the files (default: a temp dir on disk)")
    args = parser.parse_args()
    clients = [c for c in CLIENTS if c != "anyio portal" or importlib.util.find_spec("anyio")]
    spec = {
        "clients": clients,
        "calls": args.calls,
        "creates": args.creates,
        "downloads": args.downloads,
        "rounds": args.rounds,
        "size": args.size_mib * MIB,
    }
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=args.dir) as tmp:
        times = in_subprocess("interleaved", spec, Path(tmp))
        runs = [
            in_subprocess(name, spec, Path(tmp))
            for _ in range(args.memory_runs)
            for name in clients
        ]
        memory = {
            name: {
                phase: [run[phase] for run in runs[i :: len(clients)]]
                for phase in ("create", "download")
            }
            for i, name in enumerate(clients)
        }
    report(times, memory, args, load_before)


def report(
    times: dict[str, Any], memory: dict[str, Any], args: argparse.Namespace, load_before: Any
) -> None:
    loads = " / ".join(f"{x:.1f}" for x in load_before)
    after = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.calls} no-I/O calls and {args.creates} sequential create_job (alternating "
        f"clients call by call), {args.rounds} rounds of {args.downloads} concurrent downloads "
        f"of {args.size_mib} MiB (alternating round by round); emulator in a subprocess; "
        f"load average (1/5/15 min) before {loads}, after {after}, on {os.cpu_count()} CPUs"
    )
    units = {"call": ("us", 1e6), "create": ("us", 1e6), "download": ("ms", 1e3)}
    head = f"{'':<22}" + "".join(f"{name:>14}" for name in times["call"])
    for phase, (unit, scale) in units.items():
        print(f"\n{phase + ' (' + unit + ' per call)':<22}" + head[22:])
        per_call = {name: [t / _per(phase, args) for t in ts] for name, ts in times[phase].items()}
        for label, stat in (("mean", statistics.fmean), ("median", statistics.median)):
            row = {name: stat(ts) for name, ts in per_call.items()}
            print(f"  {label:<20}" + "".join(f"{row[n] * scale:>14.1f}" for n in row))
            print(
                f"  {label + ' x async':<20}"
                + "".join(f"{row[n] / row['async']:>14.3f}" for n in row)
            )
    print(f"\n{'peak RSS growth (MiB)':<22}" + head[22:])
    for phase in ("create", "download"):
        row = {n: [x / MIB for x in memory[n][phase]] for n in memory}
        print(
            f"  {phase + ' median':<20}"
            + "".join(f"{statistics.median(row[n]):>14.1f}" for n in row)
        )
        print(
            f"  {phase + ' range':<20}"
            + "".join(f"{f'{min(row[n]):.0f} to {max(row[n]):.0f}':>14}" for n in row)
        )
    print("\ntargets (sync against async):")
    for phase in ("create", "download"):
        ratio = statistics.fmean(times[phase]["sync"]) / statistics.fmean(times[phase]["async"])
        extra = (
            statistics.median(memory["sync"][phase]) - statistics.median(memory["async"][phase])
        ) / MIB
        print(
            f"  {phase:<9} mean time per call x{ratio:.3f} (target <= {TARGET_RATIO}: "
            f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}), peak RSS {extra:+.1f} MiB "
            f"(target <= +{TARGET_RSS_MIB:.0f}: {'met' if extra <= TARGET_RSS_MIB else 'MISSED'})"
        )


def _per(phase: str, args: argparse.Namespace) -> int:
    """Calls in one timed step of ``phase`` (a download round is ``--downloads`` calls)."""
    return args.downloads if phase == "download" else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        subprocess_main(*sys.argv[2:6])
    else:
        main()
