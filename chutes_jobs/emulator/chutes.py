"""The built-in ``demo`` chute: deterministic output files, echo, failure and sleep."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .store import ChuteMethod

__all__ = ["DEMO_CHUTE_NAME", "demo_bytes", "demo_file_names", "demo_methods"]

DEMO_CHUTE_NAME = "demo"
_BLOCK = 1 << 20


def demo_file_names(count: int) -> list[str]:
    """Names of the demo outputs; with two files or more the last one sits in ``sub/``."""
    names = [f"file_{i:03d}.bin" for i in range(count)]
    if count >= 2:
        names[-1] = f"sub/{names[-1]}"
    return names


def demo_bytes(seed: int, index: int, size: int) -> Iterator[bytes]:
    """The content of demo file ``index``: a seeded random stream, in 1 MiB blocks."""
    rng = random.Random(f"chutes-demo:{seed}:{index}")
    while size > 0:
        block = rng.randbytes(min(_BLOCK, size))
        size -= len(block)
        yield block


def _write_file(path: Path, seed: int, index: int, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for block in demo_bytes(seed, index, size):
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


async def files(
    output_dir: Path,
    sizes: list[int] | None = None,
    count: int | None = None,
    size: int = 1024,
    seed: int = 0,
) -> dict[str, Any]:
    """Write files of the given ``sizes`` (or ``count`` files of ``size`` bytes).

    Returns ``{"files": {name: sha256 hex}}``.
    """
    if sizes is None:
        sizes = [size] * (2 if count is None else count)
    digests: dict[str, str] = {}
    for index, (name, nbytes) in enumerate(zip(demo_file_names(len(sizes)), sizes, strict=True)):
        digests[name] = await asyncio.to_thread(_write_file, output_dir / name, seed, index, nbytes)
    return {"files": digests}


async def echo(output_dir: Path, **kwargs: Any) -> dict[str, Any]:
    """Return the job's arguments."""
    return kwargs


async def fail(output_dir: Path, message: str = "demo failure") -> None:
    """Raise ``RuntimeError(message)``: the job finishes with status ``error``."""
    raise RuntimeError(message)


async def sleep(output_dir: Path, seconds: float = 1.0) -> dict[str, Any]:
    """Sleep, then return ``{"slept": seconds}``."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def demo_methods() -> dict[str, ChuteMethod | None]:
    """The demo chute's methods by name."""
    return {"files": files, "echo": echo, "fail": fail, "sleep": sleep}
