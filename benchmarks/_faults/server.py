"""An emulator in a process of its own, for the scenarios that measure the client's process
(descriptors, sockets, memory): nothing the server holds is counted as the client's.

    python -m benchmarks._faults.serve '{"seed": 1, "jobs": {"one": {"a.bin": 1048576}}}'

prints one JSON line (``base_url``, ``api_key``, ``token_secret``, and per placed job its
``job_id`` and each output's ``sha256``), then answers commands read from stdin, one JSON
line each: ``jobs`` (every job of the worker chute created through the API: ``{job_id:
job_args}``). It exits at ``quit`` or the end of its input.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.tokens import TokenIssuer

from .fixtures import add_worker_chute, place_finished_job, seeded_bytes

__all__ = ["EmulatorProcess", "serve"]

ROOT = Path(__file__).resolve().parents[2]
#: Seconds the process gets to start, or to answer a command.
ANSWER_TIMEOUT = 60.0


async def serve(spec: dict[str, Any]) -> None:
    """Serve until ``quit`` or the end of stdin (``benchmarks._faults.serve`` runs this)."""
    secret = secrets.token_hex(32)
    async with Emulator(token_secret=secret, demo_chute=False) as emu:
        add_worker_chute(emu)
        placed: dict[str, Any] = {}
        for number, (label, files) in enumerate(spec.get("jobs", {}).items()):
            outputs = {
                name: seeded_bytes(spec.get("seed", 0) * 1000 + number * 100 + i, size)
                for i, (name, size) in enumerate(files.items())
            }
            job = place_finished_job(emu, outputs)
            placed[label] = {"job_id": job.job_id, "sha256": job.sha256}
        ready = {
            "base_url": emu.base_url,
            "api_key": emu.api_key,
            "token_secret": secret,
            "jobs": placed,
        }
        _answer(ready)
        placed_ids = {p["job_id"] for p in placed.values()}
        while (command := (await asyncio.to_thread(sys.stdin.readline)).strip()) != "quit":
            if command == "jobs":
                created = {
                    job_id: job.job_args
                    for job_id, job in emu.store.jobs.items()
                    if job_id not in placed_ids
                }
                _answer(created)
            elif not command:
                return  # the parent went away
            else:
                _answer({"error": f"unknown command {command!r}"})


def _answer(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


@dataclass
class Started:
    """What the server process printed once ready."""

    base_url: str
    api_key: str
    token_secret: str
    jobs: dict[str, dict[str, Any]]


class EmulatorProcess:
    """Start :mod:`benchmarks._faults.serve` (``async with``); mint worker status URLs for
    its jobs and ask it which jobs were created."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec
        self._proc: asyncio.subprocess.Process | None = None
        self.started: Started | None = None
        self._tokens: TokenIssuer | None = None

    async def __aenter__(self) -> Started:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks._faults.serve",
            json.dumps(self._spec),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        self.started = Started(**await self._read())
        self._tokens = TokenIssuer(self.started.token_secret)
        return self.started

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.write(b"quit\n")
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def status_url(self, job_id: str) -> str:
        """The URL the platform would hand the worker of ``job_id``."""
        assert self.started is not None and self._tokens is not None
        return f"{self.started.base_url}/jobs/{job_id}?token={self._tokens.issue(job_id)}"

    async def created_jobs(self) -> dict[str, dict[str, Any]]:
        """``{job_id: job_args}`` of every job created through the API so far."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(b"jobs\n")
        await self._proc.stdin.drain()
        jobs: dict[str, dict[str, Any]] = await self._read()
        return jobs

    async def _read(self) -> Any:
        assert self._proc is not None and self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), ANSWER_TIMEOUT)
        if not line:
            raise RuntimeError("the emulator process ended before answering")
        return json.loads(line)
