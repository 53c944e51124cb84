"""Scenario 8: 64 tasks creating, polling and downloading at once through one session, for a
set time: no errors, and the client's memory does not grow (peak RSS over its level after a
warm-up). The emulator runs in a process of its own, so its memory is not counted."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import chutes_jobs as cj

from .._common import proc_status, reset_peak_rss
from .fixtures import WORKER_CHUTE, WORKER_METHOD, scratch_dir
from .report import Figure, Sweep, count_figure
from .server import EmulatorProcess, Started

__all__ = ["FULL", "REDUCED", "Size", "run"]

NAME = "load"
MIB = 1 << 20
#: Growth allowed beyond the level reached after the warm-up.
RSS_LIMIT = 16 * MIB


@dataclass(frozen=True)
class Size:
    """``tasks`` at once for ``seconds`` (the first ``warmup`` of them not measured), each
    download ``file_bytes``."""

    tasks: int
    seconds: float
    warmup: float
    file_bytes: int


FULL = Size(tasks=64, seconds=30.0, warmup=3.0, file_bytes=1 * MIB)
REDUCED = Size(tasks=64, seconds=6.0, warmup=2.0, file_bytes=1 * MIB)


@dataclass
class _Tally:
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """Run the mixed load; measure RSS after the warm-up."""
    spec = {"seed": seed, "jobs": {f"dl{n}": {f"f{n}.bin": size.file_bytes} for n in range(4)}}
    tally = _Tally()
    with scratch_dir(NAME) as root:
        async with EmulatorProcess(spec) as started:
            sweep.secret(started.api_key, "API key")
            session = cj.ChutesSession(base_url=started.base_url, api_key=started.api_key)
            async with session:
                known = deque((j["job_id"] for j in started.jobs.values()), maxlen=256)
                stop = time.monotonic() + size.seconds
                workers = [
                    _worker(
                        session,
                        started,
                        known,
                        root,
                        k,
                        random.Random(f"{seed}-load-{k}"),
                        stop,
                        tally,
                        sweep,
                    )
                    for k in range(size.tasks)
                ]
                done = asyncio.Event()
                sampling = asyncio.create_task(_sample_rss(size.warmup, done))
                await asyncio.gather(*workers)
                done.set()
                memory = await sampling
                sweep.reprs([session])
    total = sum(tally.ops.values())
    peak_above = memory.peak - memory.early
    mix = ", ".join(f"{n:,} {op}s" for op, n in sorted(tally.ops.items()))
    return [
        count_figure(
            NAME,
            f"{size.tasks}-way mixed load for {size.seconds:.0f} s ({total:,} calls: "
            f"{mix}): errors",
            tally.errors,
        ),
        Figure(
            NAME,
            f"RSS growth from the {size.warmup:.0f} s warm-up's end to the load's end "
            f"(level then {memory.early / MIB:.0f} MiB, peak {peak_above / MIB:+.0f} MiB above "
            "it)",
            f"{memory.growth / MIB:.1f} MiB",
            memory.growth < RSS_LIMIT,
            why=f"limit {RSS_LIMIT // MIB} MiB",
        ),
    ]


@dataclass
class _Memory:
    """RSS sampled every 0.1 s from the warm-up's end until the load ends."""

    samples: list[int] = field(default_factory=list)
    peak: int = 0

    @property
    def early(self) -> int:
        """The level right after the warm-up: the highest sample of the first quarter."""
        return max(self.samples[: max(1, len(self.samples) // 4)])

    @property
    def growth(self) -> int:
        """How far the last quarter's level is above the first quarter's (a leak's trace)."""
        return max(self.samples[-max(1, len(self.samples) // 4) :]) - self.early


async def _sample_rss(warmup: float, done: asyncio.Event) -> _Memory:
    await asyncio.sleep(warmup)
    memory = _Memory()
    reset_peak_rss()
    while not done.is_set():
        memory.samples.append(proc_status("VmRSS"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.1)
    memory.samples.append(proc_status("VmRSS"))
    memory.peak = proc_status("VmHWM")
    return memory


async def _worker(
    session: cj.ChutesSession,
    started: Started,
    known: deque[str],
    root: Path,
    number: int,
    rng: random.Random,
    stop: float,
    tally: _Tally,
    sweep: Sweep,
) -> None:
    downloads = list(started.jobs.values())
    dest = root / f"w{number:02d}.bin"
    while time.monotonic() < stop:
        op = rng.choice(("create", "poll", "poll", "download"))
        try:
            if op == "create":
                handle = await session.create_job(WORKER_CHUTE, WORKER_METHOD, {"w": number})
                known.append(handle.id)
            elif op == "poll":
                await session.job(rng.choice(known)).refresh()
            else:
                job = rng.choice(downloads)
                name = next(iter(job["sha256"]))
                await session.job(job["job_id"]).download(name, dest, overwrite=True)
        except Exception as exc:
            sweep.exception(exc)
            tally.errors.append(f"{op}: {type(exc).__name__}: {exc}")
        tally.ops[op] += 1
