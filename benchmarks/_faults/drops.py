"""Scenario 1: the connection drops at seeded offsets of a large download, with Range on and
off; every download must end with the server's exact bytes, and no file under a final name
may ever be incomplete, also while the downloads run (a thread watches the folder)."""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import chutes_jobs as cj
from chutes_jobs.demo import sha256_file
from chutes_jobs.emulator import Emulator

from .fixtures import place_finished_job, scratch_dir, seeded_bytes, user_on_emulator
from .probes import FinalNameWatcher
from .report import Figure, Sweep, count_figure, first_of

__all__ = ["FULL", "REDUCED", "Size", "run"]

NAME = "drops"
MIB = 1 << 20


@dataclass(frozen=True)
class Size:
    """``offsets`` downloads of one ``file_bytes`` file, each cut once at a seeded offset."""

    file_bytes: int
    offsets: int


FULL = Size(file_bytes=64 * MIB, offsets=100)
REDUCED = Size(file_bytes=4 * MIB, offsets=100)


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """Both modes, Range on then off: three figures each."""
    figures: list[Figure] = []
    for range_support in (True, False):
        figures += await _drops(size, sweep, seed, range_support=range_support)
    return figures


@dataclass
class _Tally:
    sha256: str
    identical: int = 0
    resumed_at_cut: int = 0
    failures: list[str] = field(default_factory=list)


async def _drops(size: Size, sweep: Sweep, seed: int, *, range_support: bool) -> list[Figure]:
    mode = "Range on" if range_support else "Range off"
    rng = random.Random(f"{seed}-{mode}")
    offsets = [rng.randrange(0, size.file_bytes) for _ in range(size.offsets)]
    with scratch_dir(NAME) as root:
        async with user_on_emulator(sweep, range_support=range_support) as (emu, session):
            placed = place_finished_job(emu, {"big.bin": seeded_bytes(seed, size.file_bytes)})
            tally = _Tally(placed.sha256["big.bin"])
            handle = session.job(placed.job_id)
            file = (await handle.refresh()).file("big.bin")
            dest_root = root / "downloads"
            with FinalNameWatcher(dest_root, lambda _: size.file_bytes) as watcher:
                for number, offset in enumerate(offsets):
                    folder = dest_root / f"{number:03d}"
                    await _one(emu, handle, file, folder / "big.bin", offset, tally, sweep)
                    await asyncio.to_thread(shutil.rmtree, folder, True)
            sweep.reprs([session, handle, file])
    n = size.offsets
    figures = [
        Figure(
            NAME,
            f"{mode}: identical sha256 after a drop, {size.file_bytes // MIB} MiB file",
            f"{tally.identical}/{n}",
            tally.identical == n,
            why=first_of(tally.failures),
        ),
        count_figure(
            NAME,
            f"{mode}: incomplete files under final names ({watcher.scans:,} folder scans "
            "while downloading)",
            watcher.incomplete,
        ),
    ]
    if range_support:
        resumed = tally.resumed_at_cut
        figures.insert(
            1, Figure(NAME, f"{mode}: resumed at the cut", f"{resumed}/{n}", resumed == n)
        )
    return figures


async def _one(
    emu: Emulator,
    handle: cj.JobHandle,
    file: cj.OutputFile,
    dest: Path,
    offset: int,
    tally: _Tally,
    sweep: Sweep,
) -> None:
    """One download of ``file`` to ``dest`` whose first attempt is cut after ``offset`` bytes."""
    fault = emu.faults.add("download", cut_after=offset)
    first_request = len(emu.requests)
    try:
        path = await handle.download(file, dest, fsync=False)
    except Exception as exc:
        sweep.exception(exc)
        tally.failures.append(f"offset {offset}: {type(exc).__name__}: {exc}")
        return
    finally:
        emu.faults.clear("download")
    ranges = [r.headers.get("Range") for r in emu.requests[first_request:] if r.route == "download"]
    if fault.fired == 1 and ranges[1:] == [f"bytes={offset}-" if offset else None]:
        tally.resumed_at_cut += 1
    got = await asyncio.to_thread(sha256_file, path)
    if got == tally.sha256:
        tally.identical += 1
    else:
        tally.failures.append(f"offset {offset}: sha256 {got[:12]}... is not the server's")
