"""The ledger table of ``bench_bulk.py`` (a script's part, not a test): ``submit_many`` creates/s
with no ledger, the SQLite ledger (its writer process, then its thread writer), the PostgreSQL
ledger with 1 and with 2 processes, each client in its own process, with the client's CPU per
create, the SQLite writer process's (its reaped children's), and the server's (and
PostgreSQL's) share of all the CPU used.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_bulk
from bench_bulk import API_KEY, CHUTE, CONCURRENCY, _submit_many, cpu_of, own_cpu, server


def ledger_client(base_url: str, api_key: str, chute: str, n: int, ledger: str) -> None:
    """One client process of the ledger table: ready, wait for ``go``, run, report."""
    if ledger.startswith("thread:"):  # the SQLite ledger's thread writer, not its process
        from chutes_jobs.bulk.ledger.sqlite import SqliteLedger

        ledger = ledger.removeprefix("thread:")
        SqliteLedger.open.__func__.__kwdefaults__["writer"] = "thread"  # type: ignore[attr-defined]
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, writer, wall = own_cpu(), children_cpu(), time.perf_counter()
    count = asyncio.run(
        _submit_many(base_url, n, None if ledger == "-" else ledger, api_key, chute)
    )
    report = {"cpu": own_cpu() - cpu, "wall": time.perf_counter() - wall, "count": count,
              "writer": children_cpu() - writer,
              "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    print(json.dumps(report), flush=True)


def run_clients(info: dict[str, Any], n: int, ledger: str | None, processes: int) -> dict[str, Any]:
    """``processes`` client processes on one batch of ``n`` inputs, started together: their
    wall time (from go to the last one done), CPU, results and peak RSS."""
    server_args = [info["base_url"], info.get("api_key", API_KEY), info.get("chute", CHUTE)]
    command = [sys.executable, bench_bulk.__file__, "client", *server_args, str(n), ledger or "-"]
    procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    start = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = [json.loads(proc.communicate()[0]) for proc in procs]
    wall = time.perf_counter() - start
    assert sum(r["count"] for r in reports) == n, reports
    return {"wall": wall, "cpu": sum(r["cpu"] for r in reports),
            "writer": sum(r["writer"] for r in reports),
            "rss": max(r["rss"] for r in reports)}  # fmt: skip


def children_cpu() -> float:
    """CPU of this process's reaped children (the SQLite ledger's writer process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LEDGER_ROWS = ("no ledger", "SQLite ledger", "SQLite ledger, thread writer",
               "PostgreSQL ledger, 1 process", "PostgreSQL ledger, 2 processes")  # fmt: skip


def bench_ledgers(kind: str, n: int, rounds: int, postgres: str | None) -> None:
    """The ledger table against one server (``trivial`` or ``emulator-creates``)."""
    import _pg

    rows = LEDGER_ROWS if postgres else LEDGER_ROWS[:3]
    best: dict[str, dict[str, float]] = {}
    with server(kind) as (info, pid), tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):  # interleaved: the machine's noise hits every row alike
            for name in rows:
                sqlite = str(Path(tmp, f"{round_}-{len(name)}.db"))
                ledger = {"no ledger": None, "SQLite ledger": sqlite,
                          "SQLite ledger, thread writer": f"thread:{sqlite}"}.get(
                    name, _pg.fresh_database(postgres) if postgres else None)  # fmt: skip
                cpu0, pg0 = cpu_of(pid), _pg.server_cpu(postgres) if postgres else 0.0
                got = run_clients(info, n, ledger, 2 if name.endswith("2 processes") else 1)
                got["server"] = cpu_of(pid) - cpu0
                got["pg"] = (_pg.server_cpu(postgres) - pg0) if postgres else 0.0
                got["rate"] = n / got["wall"]
                if got["rate"] > best.get(name, {"rate": 0.0})["rate"]:
                    best[name] = got
    none, sqlite = best["no ledger"]["rate"], best["SQLite ledger"]["rate"]
    label = "the trivial server" if kind == "trivial" else "the emulator (creates only)"
    print(f"\nledgers: {n} creates at concurrency {CONCURRENCY} against {label}, "
          f"best of {rounds} rounds; CPU shares are of all the CPU the row used")  # fmt: skip
    print(f"{'row':32} {'creates/s':>9} {'client us/create':>17} {'writer us/create':>16} "
          f"{'server share':>12} {'postgres share':>14} {'peak RSS MiB':>12} "
          f"{'x no ledger':>11}")  # fmt: skip
    for name in rows:
        r = best[name]
        total = r["cpu"] + r["writer"] + r["server"] + r["pg"]
        print(f"{name:32} {r['rate']:9.0f} {r['cpu'] / n * 1e6:17.0f} "
              f"{r['writer'] / n * 1e6:16.0f} {r['server'] / total:12.0%} "
              f"{r['pg'] / total:14.0%} {r['rss']:12.0f} {r['rate'] / none:11.2f}")  # fmt: skip
    line = f"SQLite / no ledger = {sqlite / none:.2f} (target >= 0.8)"
    if postgres:
        pg1 = best["PostgreSQL ledger, 1 process"]["rate"]
        line += f"; PostgreSQL 1 process / SQLite = {pg1 / sqlite:.2f} (target >= 0.5)"
    print(line)
