"""Scenario 5: cancellation at seeded moments of ``wait``, ``download``, ``download_outputs``,
``upload_outputs`` and ``submit_many``. After each: the process holds the descriptors it held
before (files and sockets, counted in ``/proc/self/fd`` once its sessions are closed), no file
under a final name is incomplete (a thread watches while it runs), and a re-run ends with the
right outcome and no create sent twice.

The emulator runs in a process of its own, so every descriptor counted is the client's.
"""

from __future__ import annotations

import asyncio
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chutes_jobs as cj

from .cancel_ops import Context, Operation, operations
from .fixtures import quick_retries, scratch_dir, seeded_bytes
from .probes import FinalNameWatcher, open_descriptors, settled_descriptors
from .report import Figure, Sweep, count_figure
from .server import EmulatorProcess, Started

__all__ = ["FULL", "REDUCED", "Size", "run"]

NAME = "cancel"
MIB = 1 << 20


@dataclass(frozen=True)
class Size:
    """``moments`` cancellations spread over the five operations; ``file_bytes`` is the
    single download's size and the total of the several files (``files``) of
    ``download_outputs`` and ``upload_outputs``; ``batch`` inputs per ``submit_many``."""

    moments: int
    file_bytes: int
    files: int
    batch: int


FULL = Size(moments=250, file_bytes=32 * MIB, files=6, batch=24)
REDUCED = Size(moments=250, file_bytes=2 * MIB, files=6, batch=12)


@dataclass
class _Tally:
    cancelled: Counter[str] = field(default_factory=Counter)
    finished_first: Counter[str] = field(default_factory=Counter)
    leaked: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    loop_errors: list[str] = field(default_factory=list)


def _spec(size: Size, seed: int) -> dict[str, Any]:
    part = size.file_bytes // size.files
    many = {f"d{n % 3}/f{n}.bin": part for n in range(size.files)}
    return {"seed": seed, "jobs": {"one": {"one.bin": size.file_bytes}, "many": many}}


def _expected_sizes(started: Started, size: Size) -> Callable[[str], int | None]:
    """The size a file under a final name must have, by its path under the trials folder
    (``t000/one.bin``, ``t001/many/d0/f0.bin``; no claim for other files)."""
    sizes = {"one.bin": size.file_bytes}
    sizes.update({name: size.file_bytes // size.files for name in started.jobs["many"]["sha256"]})

    def expected(relative: str) -> int | None:
        parts = Path(relative).parts
        if parts[1:] == ("one.bin",):
            return sizes["one.bin"]
        if len(parts) >= 3 and parts[1] == "many":
            return sizes.get("/".join(parts[2:]))
        return None

    return expected


@dataclass(frozen=True)
class _Shared:
    """What every trial uses: the emulator process, the files to upload, the sweep."""

    server: EmulatorProcess
    started: Started
    sources: Path
    sweep: Sweep

    def sessions(self) -> tuple[cj.ChutesSession, cj.ChutesSession]:
        """A user's session and a worker's (no credentials), for one trial."""
        base, policy = self.started.base_url, quick_retries()
        return (
            cj.ChutesSession(base_url=base, api_key=self.started.api_key, retry_policy=policy),
            cj.ChutesSession(base_url=base, retry_policy=policy),
        )

    def context(
        self, user: cj.ChutesSession, worker: cj.ChutesSession, folder: Path, trial: int
    ) -> Context:
        return Context(
            self.server, self.started, user, worker, folder, self.sources, trial, self.sweep
        )


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """Calibrate each operation's duration, then cancel each at seeded moments within it."""
    rng = random.Random(f"{seed}-cancel")
    ops = operations(size.batch)
    tally = _Tally()
    with scratch_dir(NAME) as root, _loop_errors(tally.loop_errors), _resource_warnings(tally):
        sources = root / "sources"
        sources.mkdir()
        for n in range(size.files):
            data = seeded_bytes(seed + 7 + n, size.file_bytes // size.files)
            (sources / f"s{n}.bin").write_bytes(data)
        trials = root / "trials"
        trials.mkdir()
        server = EmulatorProcess(_spec(size, seed))
        async with server as started:
            sweep.secret(started.api_key, "API key")
            shared = _Shared(server, started, sources, sweep)
            with FinalNameWatcher(trials, _expected_sizes(started, size)) as watcher:
                durations = {op.name: await _calibrate(op, shared, trials, tally) for op in ops}
                for trial in range(size.moments):
                    op = ops[trial % len(ops)]
                    moment = rng.uniform(0, durations[op.name])
                    await _trial(op, moment, shared, trials / f"t{trial:03d}", trial, tally)
    return _figures(size, tally, watcher)


async def _calibrate(op: Operation, shared: _Shared, trials: Path, tally: _Tally) -> float:
    """How long ``op`` takes uncancelled (a never-ending ``wait``: a quarter second)."""
    folder = trials / f"calibrate-{op.name}"
    await asyncio.to_thread(folder.mkdir)
    user, worker = shared.sessions()
    async with user, worker:
        ctx = shared.context(user, worker, folder, -1)
        prepared = await op.prepare(ctx)
        if op.name == "wait":
            return 0.25
        began = time.perf_counter()
        await op.run(ctx, prepared)
        elapsed = time.perf_counter() - began
        tally.rerun += [f"calibration {op.name}: {w}" for w in await op.rerun(ctx, prepared)]
    return elapsed


async def _trial(
    op: Operation, moment: float, shared: _Shared, folder: Path, trial: int, tally: _Tally
) -> None:
    """Prepare, run until ``moment``, cancel, close the sessions, count descriptors; re-run."""
    await asyncio.to_thread(folder.mkdir)
    baseline = open_descriptors()
    user, worker = shared.sessions()
    async with user, worker:
        ctx = shared.context(user, worker, folder, trial)
        prepared = await op.prepare(ctx)
        task = asyncio.create_task(op.run(ctx, prepared))
        await asyncio.wait([task], timeout=moment)
        task.cancel()
        try:
            await task
            tally.finished_first[op.name] += 1
        except asyncio.CancelledError:
            tally.cancelled[op.name] += 1
        except Exception as exc:
            shared.sweep.exception(exc)
            tally.errors.append(f"trial {trial} {op.name}: {type(exc).__name__}: {exc}")
    extra = [
        d.replace(f"{shared.sources.parent}/", "") for d in await settled_descriptors(baseline)
    ]
    where = f"trial {trial} {op.name} at {moment * 1000:.0f} ms"
    tally.sockets += [f"{where}: {d}" for d in extra if d.startswith("socket:")]
    tally.leaked += [f"{where}: {d}" for d in extra if not d.startswith("socket:")]
    user, worker = shared.sessions()
    async with user, worker:
        try:
            tally.rerun += [
                f"{where}: {w}"
                for w in await op.rerun(shared.context(user, worker, folder, trial), prepared)
            ]
        except Exception as exc:
            shared.sweep.exception(exc)
            tally.rerun.append(f"{where}: re-run raised {type(exc).__name__}: {exc}")


def _figures(size: Size, tally: _Tally, watcher: FinalNameWatcher) -> list[Figure]:
    cancelled = sum(tally.cancelled.values())
    spread = ", ".join(
        f"{name} {tally.cancelled[name]}/{tally.cancelled[name] + tally.finished_first[name]}"
        for name in tally.cancelled | tally.finished_first
    )
    return [
        Figure(
            NAME,
            f"{size.moments} seeded moments, cancelled mid-operation",
            f"{cancelled} ({spread})",
            cancelled > 0,
        ),
        count_figure(NAME, "descriptors (files) left open after a cancellation", tally.leaked),
        count_figure(
            NAME, "connections (sockets) left open once the session closed", tally.sockets
        ),
        count_figure(
            NAME,
            f"incomplete files under final names ({watcher.scans:,} folder scans)",
            watcher.incomplete,
        ),
        count_figure(NAME, "errors other than the cancellation", tally.errors),
        count_figure(
            NAME,
            "re-runs not ending right (wrong bytes, a lost upload, a duplicate create)",
            tally.rerun,
        ),
        count_figure(
            NAME, "errors reported by the event loop, ResourceWarnings", tally.loop_errors
        ),
    ]


@contextmanager
def _loop_errors(sink: list[str]) -> Iterator[None]:
    """Record what the event loop reports (an exception never retrieved, unclosed sessions)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: sink.append(str(context.get("message"))))
    try:
        yield
    finally:
        loop.set_exception_handler(previous)


@contextmanager
def _resource_warnings(tally: _Tally) -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            yield
        finally:
            tally.loop_errors += [
                f"{w.category.__name__}: {w.message}"
                for w in caught
                if issubclass(w.category, ResourceWarning)
            ]
