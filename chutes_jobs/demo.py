"""The demo: a whole job lifecycle on the embedded emulator, with no credentials.

Create a ``demo.files`` job → watch it run → stream its outputs to disk → verify sha256 →
delete it. ``chutes-jobs demo`` runs this.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path
from typing import Any

from ._progress import ProgressDisplay
from .emulator import Emulator
from .polling import PollPolicy
from .session import ChutesSession

__all__ = ["run_demo", "sha256_file"]

MIB = 1024 * 1024
#: Polls fast: the emulator runs the job in moments.
DEMO_POLL = PollPolicy(initial=0.05, maximum=0.5)


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(MIB):
            digest.update(block)
    return digest.hexdigest()


async def run_demo(out: Path, *, size_mib: int = 128, quiet: bool = False) -> dict[str, Any]:
    """Run the demo and return a report (job id, files, sizes, whether every sha256 matched)."""

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    sizes = [size_mib * MIB, 3 * MIB, 64 * 1024]
    async with (
        Emulator() as emulator,
        ChutesSession(base_url=emulator.base_url, api_key=emulator.api_key) as session,
    ):
        say(f"1. local emulator of the Chutes Jobs API at {emulator.base_url}")
        handle = await session.create_job("demo", "files", {"sizes": sizes})
        say(f"2. created job {handle.id} (demo.files, {len(sizes)} files, {sum(sizes)} bytes)")
        async for snapshot in handle.watch(poll=DEMO_POLL):
            say(f"3. job is {snapshot.state.value}")
        job = handle.job
        assert job is not None
        expected: dict[str, str] = (job.result or {}).get("files", {})
        say(f"4. downloading {len(job.output_files)} files into {out}/")
        with ProgressDisplay("download") as display:
            paths = await handle.download_outputs(
                out, overwrite=True, progress=None if quiet else display.update
            )
        checks = await _verify(paths, expected)
        for name, ok in checks.items():
            say(f"5. {name}: sha256 {'matches' if ok else 'DIFFERS'}")
        await handle.delete()
        say(f"6. deleted job {handle.id}")
    verified = bool(checks) and all(checks.values()) and set(checks) == set(expected)
    say("all files verified" if verified else "verification FAILED")
    return {
        "job_id": handle.id,
        "files": {name: str(path) for name, path in paths.items()},
        "sizes": {name: path.stat().st_size for name, path in paths.items()},
        "verified": verified,
    }


async def _verify(paths: dict[str, Path], expected: dict[str, str]) -> dict[str, bool]:
    digests = await asyncio.gather(*(asyncio.to_thread(sha256_file, p) for p in paths.values()))
    return {name: expected.get(name) == digest for name, digest in zip(paths, digests, strict=True)}
