"""Shared plumbing of the transfer benchmarks (not a test, not part of the package).

* ``start_server(kind, path)`` runs a tiny aiohttp.web server in a *subprocess* (so its CPU is not
  the client's) on 127.0.0.1 and returns its base URL: ``download`` serves ``path`` with
  ``web.FileResponse``; ``upload`` is a streaming multipart sink that counts and discards bytes.
* ``run_client(script, name, ...)`` runs one client in its own subprocess and returns what it
  measured (``Measure.result()``), so peak-RSS growth is isolated per client.
* ``Measure`` records wall time, CPU seconds (``getrusage``), peak RSS growth (VmHWM after
  resetting it through ``/proc/self/clear_refs``) and the longest event-loop stall (a ticker
  sleeping 1 ms and recording the largest gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB


# ----------------------------------------------------------------------------- servers


def _serve(kind: str, path: str) -> None:
    from aiohttp import web

    async def download(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    async def upload(request: web.Request) -> web.Response:
        sizes: dict[str, int] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            n = 0
            while chunk := await part.read_chunk(4 * MIB):  # type: ignore[union-attr]
                n += len(chunk)
            sizes[str(part.name)] = n
        chunked = request.headers.get("Transfer-Encoding")
        return web.json_response({"sizes": sizes, "chunked": chunked})

    app = web.Application(client_max_size=0)
    app.router.add_get("/file", download)
    app.router.add_put("/upload", upload)
    app.router.add_post("/upload", upload)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def start_server(kind: str, path: Path) -> Iterator[str]:
    """Run the benchmark server in a subprocess; yields ``http://127.0.0.1:PORT``."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", kind, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


# ----------------------------------------------------------------------------- files


def make_file(path: Path, size: int) -> Path:
    """Write ``size`` pseudo-random (incompressible) bytes to ``path`` once."""
    if path.exists() and path.stat().st_size == size:
        return path
    block = os.urandom(4 * MIB)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    return path


# ----------------------------------------------------------------------------- measuring


def proc_status(field: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in
    bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0; ignored elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


class Measure:
    """Wall time, CPU, peak RSS growth and longest loop stall around one transfer."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self._ticker: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.001)
            now = loop.time()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    async def __aenter__(self) -> Measure:
        reset_peak_rss()
        self.rss0 = proc_status("VmRSS")
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()
        self._ticker = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = (ru.ru_utime - self.ru0.ru_utime) + (ru.ru_stime - self.ru0.ru_stime)
        assert self._ticker is not None
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        self.rss_growth = proc_status("VmHWM") - self.rss0
        self.minflt = ru.ru_minflt - self.ru0.ru_minflt

    def result(self, nbytes: int) -> dict[str, Any]:
        return {
            "bytes": nbytes,
            "wall": self.wall,
            "cpu": self.cpu,
            "rss_growth": self.rss_growth,
            "stall": self.max_gap,
            "minflt": self.minflt,
        }


def run_client(script: str, name: str, *args: str) -> dict[str, Any]:
    """Run ``script client NAME ARGS...`` in a subprocess; it prints one JSON line."""
    out = subprocess.run(
        [sys.executable, script, "client", name, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_external(argv: list[str], nbytes: int) -> dict[str, Any]:
    """Run an external client (curl); CPU from RUSAGE_CHILDREN, no stall/RSS figures."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"bytes": nbytes, "wall": wall, "cpu": cpu, "rss_growth": None, "stall": None}


def print_table(
    title: str, rows: dict[str, dict[str, Any]], refs: list[str], *, verbose: bool = False
) -> None:
    """Print MB/s, ratios vs each reference row, CPU-s/GiB, RSS growth and stall."""
    print(f"\n{title}")
    head = f"{'client':<34}{'MB/s':>8}" + "".join(f"{'x ' + r:>16}" for r in refs)
    head += f"{'CPU s/GiB':>11}{'RSS+ MiB':>10}{'stall ms':>10}"
    print(head)
    print("-" * len(head))
    speed = {n: r["bytes"] / r["wall"] / 1e6 for n, r in rows.items()}
    for name, r in rows.items():
        line = f"{name:<34}{speed[name]:>8.0f}"
        line += "".join(f"{speed[name] / speed[ref]:>16.2f}" for ref in refs if ref in speed)
        line += f"{r['cpu'] / (r['bytes'] / GIB):>11.2f}"
        line += f"{r['rss_growth'] / MIB:>10.1f}" if r["rss_growth"] is not None else f"{'-':>10}"
        line += f"{r['stall'] * 1000:>10.1f}" if r["stall"] is not None else f"{'-':>10}"
        if verbose:
            line += f"{r.get('minflt', 0):>10}"
        print(line)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    _serve(sys.argv[2], sys.argv[3])


def speed(run: dict[str, Any]) -> float:
    """Bytes per second of one measured run."""
    return float(run["bytes"] / run["wall"])


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median speed (a whole run, so its CPU and memory figures stay together)."""
    ordered = sorted(results, key=speed)
    return ordered[len(ordered) // 2]


def best_runs(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The fastest run of each client."""
    return {name: max(results, key=speed) for name, results in runs.items()}


def print_all_runs(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Every run's MB/s, in the order they ran (shows how noisy the machine was)."""
    print("\nall runs MB/s, in order:")
    for name, results in runs.items():
        print(f"  {name:<34}" + " ".join(f"{speed(r) / 1e6:6.0f}" for r in results))
