"""Running the ``chutes-jobs`` command as a user does, in a subprocess, against an emulator.

The emulator runs in a background thread of the test process (its own event loop), so tests
can read its request log and slow its downloads down; each command runs in a fresh
``python -m chutes_jobs`` process, which calls ``asyncio.run`` itself and can be sent SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from chutes_jobs.emulator import Emulator

T = TypeVar("T")

MIB = 1024 * 1024
#: A guard against a hung subprocess, never an assertion about speed.
HANG_GUARD = 120
SECRET_KEY = "cpk_" + "5" * 32 + "." + "e" * 32 + "." + "S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tXY"


class EmulatorThread:
    """An :class:`Emulator` served by an event loop in a background thread."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emulator: Emulator = self.call(self._start(options))

    @staticmethod
    async def _start(options: dict[str, Any]) -> Emulator:
        return await Emulator(**options).start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the emulator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(HANG_GUARD)

    def close(self) -> None:
        self.call(self.emulator.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(HANG_GUARD)
        self.loop.close()

    def creates(self) -> int:
        return self.emulator.counts["create"]


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTES_")}
    env.update(extra)
    return env


def cli(
    *args: str,
    emu: EmulatorThread | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``chutes-jobs ARGS`` in a subprocess (pointed at ``emu`` through the environment)."""
    extra = {}
    if emu is not None:
        extra = {
            "CHUTES_BASE_URL": emu.emulator.base_url,
            "CHUTES_API_KEY": emu.emulator.api_key,
        }
    return subprocess.run(
        [sys.executable, "-m", "chutes_jobs", *args],
        capture_output=True,
        text=True,
        env=base_env(**extra),
        cwd=cwd,
        input=stdin,
        timeout=HANG_GUARD,
    )


def popen(*args: str, emu: EmulatorThread | None = None, cwd: Path | None = None) -> Any:
    extra = {}
    if emu is not None:
        extra = {"CHUTES_BASE_URL": emu.emulator.base_url, "CHUTES_API_KEY": emu.emulator.api_key}
    return subprocess.Popen(
        [sys.executable, "-m", "chutes_jobs", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=base_env(**extra),
        cwd=cwd,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def json_lines(result: subprocess.CompletedProcess[str]) -> list[Any]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """stderr ends with one ``error: ...`` line holding each needle; no traceback anywhere."""
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def finished_job(emu: EmulatorThread, chute_method: str, *args: str) -> dict[str, Any]:
    chute, method = chute_method.split(".")
    created = as_json(cli("submit", chute, method, *args, "--json", emu=emu))
    job: dict[str, Any] = as_json(cli("wait", created["job_id"], "--json", emu=emu))
    return job
