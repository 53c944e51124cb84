"""How long the ``chutes-jobs`` command takes to start, against ``python -c "import aiohttp"``.

Runs, interleaved round by round (so machine noise hits each alike), hyperfine-style:

* ``python -c pass``                  the interpreter alone
* ``python -c "import aiohttp"``      the floor any aiohttp client pays
* ``chutes-jobs --help``              (as ``python -m chutes_jobs --help``)
* ``chutes-jobs status <job_id>``     one real GET to an emulator on 127.0.0.1

and prints each command's median wall time, peak RSS, and its difference and ratio to the
aiohttp import, and the fastest run of each (less sensitive to a busy machine). The goal:
``status`` within ``import aiohttp`` + 100 ms. Commands run in the checkout this script is in
(``python -m`` puts the working folder first on the path). Not a test.

    python benchmarks/bench_cli_startup.py [--runs 21]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_MS = 100.0
ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run of ``argv``; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        assert process.stderr is not None
        raise SystemExit(f"{argv} exited {process.returncode}: {process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``chutes-jobs emulator --port 0 --json`` in a subprocess, and what it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chutes_jobs", "emulator", "--port", "0", "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    info: dict[str, str] = json.loads(process.stdout.readline())
    return process, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command")
    options = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTES_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    emulator, info = start_emulator(env)
    try:
        env.update(CHUTES_BASE_URL=info["base_url"], CHUTES_API_KEY=info["api_key"])
        created = subprocess.run(
            [sys.executable, "-m", "chutes_jobs", "submit", "demo", "echo"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        job_id = created.stdout.strip()
        py = sys.executable
        commands = {
            "python -c pass": [py, "-c", "pass"],
            'python -c "import aiohttp"': [py, "-c", "import aiohttp"],
            "chutes-jobs --help": [py, "-m", "chutes_jobs", "--help"],
            "chutes-jobs status <id>": [py, "-m", "chutes_jobs", "status", job_id],
        }
        for argv in commands.values():  # warm the file cache and the .pyc files
            timed(argv, env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(options.runs):
            for name, argv in commands.items():
                samples[name].append(timed(argv, env))
    finally:
        emulator.terminate()
        emulator.wait()

    medians = {name: statistics.median(s for s, _ in runs) * 1000 for name, runs in samples.items()}
    fastest = {name: min(s for s, _ in runs) * 1000 for name, runs in samples.items()}
    peaks = {name: max(rss for _, rss in runs) for name, runs in samples.items()}
    base, base_min = medians['python -c "import aiohttp"'], fastest['python -c "import aiohttp"']
    print(f"{options.runs} runs of each (interleaved), wall ms; peak RSS MiB")
    print(f"{'command':<28} {'median':>7} {'vs aiohttp':>10} {'ratio':>5}  "
          f"{'fastest':>7} {'vs aiohttp':>10}  {'peak RSS':>8}")  # fmt: skip
    for name, ms in medians.items():
        low = fastest[name]
        print(f"{name:<28} {ms:7.1f} {ms - base:+10.1f} {ms / base:5.2f}  "
              f"{low:7.1f} {low - base_min:+10.1f}  {peaks[name]:8.1f}")  # fmt: skip
    name = "chutes-jobs status <id>"
    for label, extra in (("median", medians[name] - base), ("fastest", fastest[name] - base_min)):
        verdict = "met" if extra <= GOAL_MS else "NOT met"
        print(
            f"goal, {label}: status <= import aiohttp + {GOAL_MS:.0f} ms: "
            f"{extra:+.1f} ms, {verdict}"
        )


if __name__ == "__main__":
    main()
