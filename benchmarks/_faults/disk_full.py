"""Scenario 6: the destination is a small filesystem (a 20 MiB tmpfs) and a job has one output
too large for it beside small ones: the large one fails with a named error saying which file,
every file that fits lands, and the failed partial does not keep the space. A lone download of
the large file fails with a named error too; neither leaves a partial file behind. Mounting
needs root (or CAP_SYS_ADMIN): elsewhere the scenario is skipped with the reason."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import chutes_jobs as cj
from chutes_jobs.demo import sha256_file
from chutes_jobs.transfer import PART_SUFFIX, RECORD_SUFFIX

from .fixtures import place_finished_job, scratch_dir, seeded_bytes, user_on_emulator
from .report import Figure, Sweep

__all__ = ["FULL", "REDUCED", "Size", "run"]

NAME = "disk-full"
MIB = 1 << 20


@dataclass(frozen=True)
class Size:
    """A ``disk_mib`` filesystem; one ``large_mib`` output and ``small`` of ``small_mib``."""

    disk_mib: int
    large_mib: int
    small: int
    small_mib: int


FULL = Size(disk_mib=20, large_mib=64, small=4, small_mib=1)
REDUCED = FULL


async def _mount(folder: Path, size_mib: int) -> str | None:
    """Mount a tmpfs of ``size_mib`` at ``folder``; the reason when that is not permitted."""
    if shutil.which("mount") is None:
        return "no mount command"
    proc = await asyncio.create_subprocess_exec(
        "mount",
        "-t",
        "tmpfs",
        "-o",
        f"size={size_mib}m",
        "tmpfs",
        str(folder),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return f"cannot mount a tmpfs here: {out.decode(errors='replace').strip()}"
    return None


async def _umount(folder: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        "umount",
        "-l",
        str(folder),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


def _free(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """``download_outputs`` of the job into the small filesystem, then a lone ``download``."""
    with scratch_dir(NAME) as root:
        disk = root / "disk"
        disk.mkdir()
        reason = await _mount(disk, size.disk_mib)
        if reason is not None:
            return [Figure(NAME, f"a {size.disk_mib} MiB filesystem", "", True, skipped=reason)]
        try:
            return await _scenario(size, disk, seed, sweep)
        finally:
            await _umount(disk)


async def _scenario(size: Size, disk: Path, seed: int, sweep: Sweep) -> list[Figure]:
    outputs = {"large.bin": seeded_bytes(seed, size.large_mib * MIB)}
    small_names = [f"small/{n}.bin" for n in range(size.small)]
    outputs.update(
        {
            name: seeded_bytes(seed + 1 + n, size.small_mib * MIB)
            for n, name in enumerate(small_names)
        }
    )
    async with user_on_emulator(sweep, attempts=3) as (emu, session):
        placed = place_finished_job(emu, outputs)
        handle = session.job(placed.job_id)
        errors: list[BaseException] = []
        try:
            await handle.download_outputs(disk / "all")
        except cj.DownloadOutputsError as group:
            errors = list(group.exceptions)
            sweep.exception(group)
        landed = [
            name
            for name in small_names
            if (disk / "all" / name).is_file()
            and sha256_file(disk / "all" / name) == placed.sha256[name]
        ]
        lone = await _lone(handle, disk / "lone" / "large.bin", sweep)
        sweep.reprs([session, handle])
    left = _temporaries(disk)
    kept = sum(size for size in left.values())
    large_errors = [e for e in errors if "large.bin" in _texts(e)]
    named = bool(large_errors) and all(
        isinstance(e, cj.InsufficientSpaceError) for e in large_errors
    )
    described = ", ".join(f"{type(e).__name__}: {e}" for e in large_errors) or "no error"
    return [
        Figure(
            NAME,
            f"{size.large_mib} MiB output into a {size.disk_mib} MiB filesystem, "
            "download_outputs: a named error for it",
            _short(described),
            named,
            why="expected an InsufficientSpaceError naming large.bin",
        ),
        Figure(
            NAME,
            "files that fit landed",
            f"{len(landed)}/{size.small}",
            len(landed) == size.small,
            why=f"missing or wrong: {sorted(set(small_names) - set(landed))}",
        ),
        Figure(
            NAME,
            "space kept by the failed partials (and partial files left)",
            f"{kept / MIB:.1f} MiB ({len(left)} files)",
            not left,
            why=f"left: {sorted(left)}",
        ),
        lone,
    ]


async def _lone(handle: cj.JobHandle, dest: Path, sweep: Sweep) -> Figure:
    claim = "a lone download of it: a named error saying which file"
    try:
        await handle.download("large.bin", dest)
    except Exception as exc:
        sweep.exception(exc)
        named = isinstance(exc, cj.InsufficientSpaceError) and "large.bin" in str(exc)
        return Figure(
            NAME,
            claim,
            _short(f"{type(exc).__name__}: {exc}"),
            named,
            why="expected an InsufficientSpaceError whose message names large.bin",
        )
    return Figure(NAME, claim, "no error", False, why="the download reported success")


def _temporaries(disk: Path) -> dict[str, int]:
    """The partial files and records left anywhere on the disk, with their sizes."""
    return {
        str(path.relative_to(disk)): path.stat().st_size
        for path in disk.rglob("*")
        if path.name.endswith((PART_SUFFIX, RECORD_SUFFIX)) and path.is_file()
    }


def _texts(exc: BaseException) -> str:
    return "\n".join([str(exc), *map(str, getattr(exc, "__notes__", ()))])


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= 140 else one_line[:137] + "..."
