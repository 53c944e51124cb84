"""Worker upload benchmark on the emulator: ``JobHandle.upload`` vs curl -F vs the helper's pattern.

    /work/venv/bin/python benchmarks/bench_job_upload.py [--size-mib 1024] [--reps 3]

One emulator runs in a subprocess (a small launcher: ``Emulator`` with a chute whose method is
``None``, so the job waits for an outside worker) and stores every upload on disk, as it does in
tests. Before each upload the orchestrator re-sends finish (which resets the file list and hands
out a fresh upload URL); the job is completed at the end. Clients, each Python one in its own
subprocess so RSS growth is its own:

* ``chutes-jobs``: ``ChutesSession.job_from_status_url(url).upload(name, path, upload_url)``;
* ``curl``: ``curl -F file=@path;filename=x -F path=x`` to the upload URL;
* ``helper``: the official helper's pattern, ``aiohttp.FormData`` over an open file and a new
  ``ClientSession`` per call.

Prints MB/s, ratios vs curl and vs the helper, CPU, peak RSS growth and the longest event-loop
stall (1 ms ticker), then the targets: >= 0.9x curl, >= 1.0x helper, RSS+ <= 32 MiB, stall <=
20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    MIB,
    Measure,
    make_file,
    median_run,
    print_all_runs,
    print_table,
    run_client,
    run_external,
)

from chutes_jobs import ChutesSession

NAME = "x"
CLIENTS = ("chutes-jobs", "helper")
TARGETS = {"curl": 0.9, "helper": 1.0}
MAX_RSS_MIB = 32
MAX_STALL_MS = 20


# ----------------------------------------------------------------------------- emulator


def launch_emulator(data_dir: str) -> None:
    """Subprocess entry: serve an emulator with an outside-worker chute, print one JSON line."""
    from chutes_jobs.emulator import Emulator

    async def main() -> None:
        async with Emulator(data_dir=data_dir, demo_chute=False) as emu:
            emu.add_chute("bench", {"run": None})
            async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as user:
                job = await user.create_job("bench", "run")
            print(json.dumps({"base_url": emu.base_url, "status_url": emu.job_status_url(job.id)}))
            sys.stdout.flush()
            await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def emulator(data_dir: Path) -> Iterator[dict[str, str]]:
    """Run the launcher in a subprocess; yields its base URL and the job's status URL."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "emulator", str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait()


async def _finish(info: dict[str, str], source: Path, *, complete: bool = False) -> str:
    async with ChutesSession(base_url=info["base_url"]) as session:
        handle = session.job_from_status_url(info["status_url"])
        if complete:
            await handle.complete()
            return ""
        targets = await handle.finish(outputs={NAME: source})
        return targets[NAME]


def fresh_upload_url(info: dict[str, str], source: Path) -> str:
    """Re-finish the job: a new list with ``NAME`` not uploaded, and its new upload URL."""
    return asyncio.run(_finish(info, source))


# ----------------------------------------------------------------------------- clients


async def chutes_jobs_client(
    base: str, status_url: str, url: str, source: Path
) -> tuple[Measure, dict[str, Any]]:
    async with ChutesSession(base_url=base) as session:
        handle = session.job_from_status_url(status_url)
        async with Measure() as m:
            result = await handle.upload(NAME, source, url)
    return m, {"uploaded": True, "size": result.size}


async def helper_client(
    base: str, status_url: str, url: str, source: Path
) -> tuple[Measure, dict[str, Any]]:
    async with Measure() as m, aiohttp.ClientSession() as session:
        with source.open("rb") as f:  # the pattern being measured
            form = aiohttp.FormData()
            form.add_field("file", f, filename=NAME, content_type="application/octet-stream")
            form.add_field("path", NAME)
            async with session.put(url, data=form) as response:
                response.raise_for_status()
                answer: dict[str, Any] = await response.json()
    return m, answer


def client_main(name: str, base: str, status_url: str, url: str, source: str) -> None:
    client = {"chutes-jobs": chutes_jobs_client, "helper": helper_client}[name]
    m, answer = asyncio.run(client(base, status_url, url, Path(source)))
    assert answer.get("uploaded") is True, answer
    print(json.dumps(m.result(Path(source).stat().st_size)))


def run_curl(url: str, source: Path, size: int, tmp: Path) -> dict[str, Any]:
    answer = tmp / "curl-answer.json"
    argv = ["curl", "-s", "-f", "-X", "PUT", "-H", "Expect:", "-o", str(answer)]
    argv += ["-F", f"file=@{source};filename={NAME}", "-F", f"path={NAME}", url]
    result = run_external(argv, size)
    assert json.loads(answer.read_text()).get("uploaded") is True
    return result


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", help="folder for the source file and the emulator's data")
    args = parser.parse_args()
    size = args.size_mib * MIB
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*CLIENTS, "curl"]}
    with tempfile.TemporaryDirectory(prefix="bench-job-ul-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        src = make_file(tmp / "out.bin", size)
        with emulator(tmp / "emu") as info:
            for _ in range(args.reps):
                for name in CLIENTS:
                    url = fresh_upload_url(info, src)
                    argv = [info["base_url"], info["status_url"], url, str(src)]
                    runs[name].append(run_client(__file__, name, *argv))
                runs["curl"].append(run_curl(fresh_upload_url(info, src), src, size, tmp))
            asyncio.run(_finish(info, src, complete=True))
    report(runs, args.size_mib, args.reps)


def report(runs: dict[str, list[dict[str, Any]]], size_mib: int, reps: int) -> None:
    rows = {name: median_run(r) for name, r in runs.items()}
    title = f"worker upload {size_mib} MiB to the emulator, median of {reps} (loopback)"
    print_table(title, rows, ["curl", "helper"])
    print_all_runs(runs)
    ours = rows["chutes-jobs"]
    speed = {n: r["bytes"] / r["wall"] for n, r in rows.items()}
    ratio = {ref: speed["chutes-jobs"] / speed[ref] for ref in TARGETS}
    checks = {f">= {k}x {ref}": ratio[ref] >= k for ref, k in TARGETS.items()}
    checks[f"RSS+ <= {MAX_RSS_MIB} MiB"] = ours["rss_growth"] <= MAX_RSS_MIB * MIB
    checks[f"stall <= {MAX_STALL_MS} ms"] = ours["stall"] * 1000 <= MAX_STALL_MS
    print("targets:", ", ".join(f"{k}: {'ok' if v else 'MISSED'}" for k, v in checks.items()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["emulator"]:
        launch_emulator(sys.argv[2])
    elif sys.argv[1:2] == ["client"]:
        client_main(*sys.argv[2:7])
    else:
        main()
