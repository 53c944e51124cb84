"""How much memory the emulator needs to move 1 GiB each way (target: growth < 64 MiB).

Runs the emulator in a child process, uploads a 1 GiB output file through the worker routes
(streamed multipart PUT), downloads it back (hashing, not storing), and reports the child's
peak RSS growth over its warmed-up baseline, read from /proc (VmHWM after resetting it).

    /work/venv/bin/python benchmarks/bench_emulator_rss.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.chutes import demo_bytes
from chutes_jobs.emulator.tokens import TokenIssuer

MIB = 1 << 20


def proc_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM`` figure of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def serve(data_dir: Path, secret: str) -> None:
    """Child: an emulator with a chute left to outside workers; prints its address."""
    emu = Emulator(data_dir=data_dir, token_secret=secret, demo_chute=False)
    async with emu:
        emu.add_chute("ext", {"run": None})
        print(json.dumps({"base_url": emu.base_url, "api_key": emu.api_key}), flush=True)
        await asyncio.Event().wait()


def write_source(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for block in demo_bytes(1, 0, size):
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


async def transfer(http: aiohttp.ClientSession, info: dict[str, str], tokens: TokenIssuer,
                   source: Path) -> tuple[str, float, float]:  # fmt: skip
    """Create a job, upload ``source`` as its output, complete, download; (sha, up s, down s)."""
    base, auth = info["base_url"], {"Authorization": info["api_key"]}
    async with http.post(f"{base}/jobs/ext/run", json={}, headers=auth) as r:
        job_id = (await r.json())["job_id"]
    status_url = f"{base}/jobs/{job_id}?token={tokens.issue(job_id)}"
    body = {"status": "complete", "result": {}, "output_filenames": ["big.bin"]}
    async with http.post(status_url, json=body) as r:
        finished = await r.json()
    upload_url = finished["output_storage_urls"]["big.bin"]
    started = time.monotonic()
    with source.open("rb") as fh:
        form = aiohttp.FormData()
        form.add_field("file", fh, filename="big.bin", content_type="application/octet-stream")
        form.add_field("path", "big.bin")
        async with http.put(upload_url, data=form) as r:
            assert r.status == 200, await r.text()
    upload_s = time.monotonic() - started
    async with http.put(status_url, json={"status": "done"}) as r:
        file_id = next(iter((await r.json())["output_files"]))
    started = time.monotonic()
    digest = hashlib.sha256()
    async with http.get(f"{base}/jobs/{job_id}/download/{file_id}", headers=auth) as r:
        async for chunk in r.content.iter_chunked(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest(), upload_s, time.monotonic() - started


async def run(size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-emu-") as tmp:
        secret = secrets.token_hex(32)
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", tmp, "--secret", secret,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            info = json.loads(await child.stdout.readline())
            tokens = TokenIssuer(secret)
            small, big = Path(tmp) / "small.bin", Path(tmp) / "big.bin"
            write_source(small, 4 * MIB)
            expected = await asyncio.to_thread(write_source, big, size)
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await transfer(http, info, tokens, small)  # warm-up: first-use allocations
                baseline = proc_kib(child.pid, "VmRSS")
                exact = reset_peak(child.pid)
                got, up_s, down_s = await transfer(http, info, tokens, big)
                peak = proc_kib(child.pid, "VmHWM")
        finally:
            child.terminate()
            await child.wait()
    assert got == expected, "downloaded bytes differ from the uploaded ones"
    growth = (peak - baseline) / 1024
    mib = size / MIB
    print(f"moved {mib:.0f} MiB each way: upload {mib / up_s:.0f} MiB/s, "
          f"download {mib / down_s:.0f} MiB/s")  # fmt: skip
    print(f"emulator RSS: baseline {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
          f"growth {growth:.1f} MiB (target < 64 MiB)"
          + ("" if exact else " [peak not resettable: includes startup]"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.secret))
    else:
        asyncio.run(run(args.size_mib * MIB))


if __name__ == "__main__":
    main()
