"""The demo: a whole job lifecycle on the embedded emulator, with no credentials.

Start a local emulator → create a ``demo.files`` job → watch it run → stream its outputs to
disk (one bar per file on a terminal) → verify each file's sha256 against what the job
reported → delete the job. ``chutes-jobs demo`` runs this.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._progress import ProgressDisplay, human_size
from .emulator import Emulator
from .polling import PollPolicy
from .session import ChutesSession

__all__ = ["demo_sizes", "run_demo", "sha256_file"]

MIB = 1024 * 1024
STEPS = 6
#: Polls fast: the emulator runs the job in moments.
DEMO_POLL = PollPolicy(initial=0.05, maximum=0.5)

Say = Callable[[str], None]


def demo_sizes(size_mib: int) -> list[int]:
    """The demo's output sizes in bytes: one big file of ``size_mib`` MiB, 3 MiB and 64 KiB."""
    return [size_mib * MIB, 3 * MIB, 64 * 1024]


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in blocks (never whole into memory)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _step(say: Say, number: int, text: str) -> None:
    say(f"[{number}/{STEPS}] {text}")


async def run_demo(
    out: Path, *, size_mib: int = 128, say: Say | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run the demo and return a report: job id, status, files, sizes, sha256 checks.

    ``say`` receives each step as a line (default: nothing is said); ``progress`` shows the
    downloads (bars on a terminal, log lines otherwise).
    """
    tell: Say = say or (lambda _: None)
    sizes = demo_sizes(size_mib)
    async with (
        Emulator() as emulator,
        ChutesSession(base_url=emulator.base_url, api_key=emulator.api_key) as session,
    ):
        _step(tell, 1, f"started a local Chutes Jobs API emulator at {emulator.base_url}")
        handle = await session.create_job("demo", "files", {"sizes": sizes})
        total = human_size(sum(sizes))
        _step(tell, 2, f"created job {handle.id} (demo.files: {len(sizes)} files, {total})")
        async for snapshot in handle.watch(poll=DEMO_POLL):
            _step(tell, 3, f"job is {snapshot.state.value}")
        job = handle.job
        assert job is not None
        expected: dict[str, str] = (job.result or {}).get("files", {})
        _step(tell, 4, f"downloading {len(job.output_files)} files into {out}/")
        with ProgressDisplay("download") as display:
            paths = await handle.download_outputs(
                out, overwrite=True, progress=display.update if progress else None
            )
        checks = await _verify(paths, expected)
        for name, ok in sorted(checks.items()):
            size = human_size(paths[name].stat().st_size)
            _step(tell, 5, f"{name} ({size}): sha256 {'verified' if ok else 'MISMATCH'}")
        await handle.delete()
        _step(tell, 6, f"deleted job {handle.id}")
    verified = bool(checks) and all(checks.values()) and set(checks) == set(expected)
    return {
        "job_id": handle.id,
        "out": str(out),
        "files": {name: str(path) for name, path in sorted(paths.items())},
        "sizes": {name: path.stat().st_size for name, path in sorted(paths.items())},
        "sha256": {name: expected.get(name) for name in sorted(paths)},
        "verified": verified,
    }


async def _verify(paths: dict[str, Path], expected: dict[str, str]) -> dict[str, bool]:
    """Hash every file off the event loop; ``{name: digest matches}``."""
    digests = await asyncio.gather(*(asyncio.to_thread(sha256_file, p) for p in paths.values()))
    return {name: expected.get(name) == digest for name, digest in zip(paths, digests, strict=True)}
