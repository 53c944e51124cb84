"""Scenario 4: a server serving hostile output names (a compromised or foreign worker reported
them) into destination folders that already hold links: nothing outside the destination is
ever written, and every file refused is named in its error.

The jobs are placed in the emulator's store directly (a worker using this library refuses to
report such names). Beside the destinations lies a folder of sentinel files that the links
point to; the whole tree but the destination being written is compared before and after
each job's download.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import chutes_jobs as cj
from chutes_jobs.emulator import Emulator
from chutes_jobs.transfer import part_names

from .fixtures import place_finished_job, scratch_dir, user_on_emulator
from .names import OUTSIDE, Entry, generate
from .probes import tree_changes, tree_state
from .report import Figure, Sweep, count_figure, first_of

__all__ = ["FULL", "REDUCED", "Size", "run"]

NAME = "names"


@dataclass(frozen=True)
class Size:
    """``names`` hostile names, listed ``per_job`` by each job."""

    names: int
    per_job: int


FULL = Size(names=1000, per_job=20)
REDUCED = Size(names=1000, per_job=20)


@dataclass
class _Tally:
    names: int = 0
    links: int = 0
    landed: int = 0
    refused: int = 0
    outside: list[str] = field(default_factory=list)
    escaped: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """Generate the names, serve them job by job, download each job into its own folder."""
    groups = await asyncio.to_thread(generate, size.names, seed)
    rng = random.Random(f"{seed}-names")
    tally = _Tally()
    with scratch_dir(NAME) as root:
        outside = root / "outside"
        outside.mkdir()
        (outside / "sentinel.txt").write_text("must never change")
        async with user_on_emulator(sweep, attempts=2) as (emu, session):
            for number, job_entries in enumerate(_jobs(groups, size.per_job, outside)):
                dest = root / "dests" / f"job{number:03d}"
                overwrite = rng.random() < 0.3
                await _one_job(emu, session, job_entries, dest, root, overwrite, tally, sweep)
            sweep.reprs([session])
    return [
        Figure(
            NAME,
            f"{tally.names} hostile names in {number + 1} jobs, {tally.links} links "
            "waiting in the destinations: writes outside the destination",
            f"{len(tally.outside)} paths changed outside, {len(tally.escaped)} files written "
            "resolve outside",
            not tally.outside and not tally.escaped,
            why=first_of(tally.escaped + tally.outside),
        ),
        Figure(
            NAME,
            "refusals naming their file",
            f"{tally.refused - len(tally.unnamed)}/{tally.refused}",
            not tally.unnamed,
            why=first_of(tally.unnamed),
        ),
        count_figure(NAME, "names neither written nor refused", tally.unaccounted),
        Figure(
            NAME,
            "written inside the destination with the server's bytes",
            f"{tally.landed - len(tally.wrong)}/{tally.landed}",
            not tally.wrong,
            why=first_of(tally.wrong),
        ),
    ]


def _jobs(groups: list[list[Entry]], per_job: int, outside: Path) -> list[list[Entry]]:
    """Groups packed into jobs of at most ``per_job`` names (a group is never split)."""
    jobs: list[list[Entry]] = [[]]
    for group in groups:
        if jobs[-1] and len(jobs[-1]) + len(group) > per_job:
            jobs.append([])
        jobs[-1] += [(name.replace(OUTSIDE, str(outside)), link) for name, link in group]
    return jobs


async def _one_job(
    emu: Emulator,
    session: cj.ChutesSession,
    entries: list[Entry],
    dest: Path,
    root: Path,
    overwrite: bool,
    tally: _Tally,
    sweep: Sweep,
) -> None:
    contents = {
        name: f"{dest.name}:{i}:{name!r}".encode() * 4 for i, (name, _) in enumerate(entries)
    }
    placed = place_finished_job(emu, contents)
    tally.links += await asyncio.to_thread(_place_links, dest, root / "outside", entries)
    before = await asyncio.to_thread(tree_state, root, skip=dest)
    errors: list[BaseException] = []
    downloaded: dict[str, Path] = {}
    try:
        downloaded = await session.job(placed.job_id).download_outputs(dest, overwrite=overwrite)
    except cj.DownloadOutputsError as group:
        downloaded = dict(group.downloaded)
        errors = list(group.exceptions)
        sweep.exception(group)
    except Exception as exc:  # the whole call failed: no file is named by it
        errors = [exc]
        sweep.exception(exc)
    after = await asyncio.to_thread(tree_state, root, skip=dest)
    tally.outside += [f"{dest.name}: {change}" for change in tree_changes(before, after)]
    tally.names += len(entries)
    texts = ["\n".join([str(e), *map(str, getattr(e, "__notes__", ()))]) for e in errors]
    resolved = await asyncio.to_thread(dest.resolve)
    for name, _ in entries:
        if name in downloaded:
            tally.landed += 1
            await asyncio.to_thread(
                _check_landed, resolved, name, downloaded[name], contents[name], tally
            )
            continue
        tally.refused += 1
        if not errors:
            tally.unaccounted.append(f"{name!r}: not downloaded, no error")
        elif not any(repr(name) in t or str(resolved / name) in t for t in texts):
            tally.unnamed.append(f"{name!r}: {texts[0][:120]!r}")


def _check_landed(dest: Path, name: str, path: Path, data: bytes, tally: _Tally) -> None:
    """``dest`` is resolved already."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(dest) or real == dest:
        root = dest.parents[1]  # the scratch folder holding dests/ and outside/
        where = real.relative_to(root) if real.is_relative_to(root) else real
        tally.escaped.append(f"{name!r} was reported written at {where}")
    elif path.is_symlink() or real.read_bytes() != data:
        tally.wrong.append(f"{name!r}: the file at {path} is not the server's")


def _place_links(dest: Path, outside: Path, entries: list[Entry]) -> int:
    """Make ``dest`` and the links the entries ask for; how many were placed."""
    dest.mkdir(parents=True)
    placed = (_place_link(dest, outside, name, link, i) for i, (name, link) in enumerate(entries))
    return sum(placed)


def _place_link(dest: Path, outside: Path, name: str, link: str | None, number: int) -> bool:
    """Put a link pointing outside at ``name``'s path (or its partial's, its record's, or its
    first folder's) under ``dest``; False where such a path cannot be made inside ``dest``."""
    parts = name.split("/")
    if (
        name.startswith("/")
        or "\x00" in name
        or any(p in ("", ".", "..") or len(p.encode()) > 250 for p in parts)
    ):
        return False  # the harness itself must not create anything outside dest
    target = outside / f"{dest.name}-{number}"
    if link is None:
        return False
    if link == "folder":
        if len(parts) < 2:
            return False
        at, target = dest / parts[0], outside / f"{dest.name}-{number}-dir"
        target.mkdir(exist_ok=True)
    else:
        at = dest.joinpath(*parts)
        temporary = part_names(at.name)  # where the download's partial and record go
        if link in ("part", "part-dangling"):
            at = at.with_name(temporary.part)
        elif link in ("record", "record-dangling"):
            at = at.with_name(temporary.record)
        if link in ("final", "part", "record"):
            target.write_text(f"sentinel {number}")
    try:
        at.parent.mkdir(parents=True, exist_ok=True)
        at.symlink_to(target)
    except OSError:
        return False
    return True
