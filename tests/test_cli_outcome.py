"""The ``chutes-jobs`` command follows ``Job.outcome`` on the default emulator (no ``status`` in
its JSON, like the live server): exit 1 on FAILED, exit 0 with a one-line notice on UNKNOWN;
OAuth tokens through ``--api-key`` and ``CHUTES_API_KEY``; a base URL with a query refused.

Each command runs in a fresh ``python -m chutes_jobs`` process while the emulator serves from
the test's own event loop."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.auth import SCOPE_READ

#: A guard against a hung subprocess, never an assertion about speed.
HANG_GUARD = 120


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith(prefix)]


async def cli(emu: Emulator, *args: str, **env: str) -> Ran:
    """``chutes-jobs ARGS`` against ``emu`` (its URL and key in the environment unless given)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHUTES_")}
    environ.update({"CHUTES_BASE_URL": emu.base_url, "CHUTES_API_KEY": emu.api_key, **env})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chutes_jobs", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environ,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), HANG_GUARD)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def assert_one_error_line(ran: Ran, *needles: str) -> None:
    assert "Traceback" not in ran.stderr
    [line] = ran.lines("error: ")
    for needle in needles:
        assert needle in line, line


async def submitted(emu: Emulator, *args: str) -> str:
    ran = await cli(emu, "submit", *args)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.strip()


async def test_wait_on_a_failed_job_exits_1_with_its_message(chutes_emulator: Emulator) -> None:
    job_id = await submitted(chutes_emulator, "demo", "fail")
    waited = await cli(chutes_emulator, "wait", job_id, "--json")
    assert waited.returncode == 1
    assert_one_error_line(waited, job_id, "failed (status 'error')", "RuntimeError: demo failure")
    assert waited.json["outcome"] == "failed" and waited.json["status"] is None
    assert waited.json["outcome_detail"] == "RuntimeError: demo failure"
    status = await cli(chutes_emulator, "status", job_id)
    assert status.returncode == 1
    assert status.stdout.strip() == f"job {job_id}: finished (error)"


async def test_run_with_a_bad_argument_exits_1_and_downloads_nothing(
    chutes_emulator: Emulator, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    ran = await cli(
        chutes_emulator, "run", "demo", "files", "--arg", "count=abc", "--out", str(out)
    )
    assert ran.returncode == 1
    assert_one_error_line(ran, "failed", "TypeError")
    assert not out.exists()


async def test_a_successful_job_says_so(chutes_emulator: Emulator) -> None:
    job_id = await submitted(chutes_emulator, "demo", "echo", "--arg", "a=1")
    waited = await cli(chutes_emulator, "wait", job_id)
    assert (waited.returncode, waited.stdout.strip()) == (0, f"job {job_id}: finished (complete)")
    assert waited.lines("notice: ") == [] and waited.lines("error: ") == []


async def test_an_unknown_outcome_exits_0_with_one_notice(
    chutes_emulator: Emulator, tmp_path: Path
) -> None:
    chutes_emulator.add_chute("ext", {"run": None})
    job_id = await submitted(chutes_emulator, "ext", "run")
    url = chutes_emulator.job_status_url(job_id)
    async with aiohttp.ClientSession() as http:  # a worker that never used this library
        async with http.post(url, json={"status": "complete", "result": {"n": 1}}) as finish:
            assert finish.status == 200
        async with http.put(url, json={"status": "done"}) as complete:
            assert complete.status == 200
    for command in (["wait", job_id], ["status", job_id]):
        ran = await cli(chutes_emulator, *command)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == f"job {job_id}: finished (outcome unknown)"
        [notice] = ran.lines("notice: ")
        assert job_id in notice and "outcome is unknown" in notice
        assert ran.lines("error: ") == []
        as_json = await cli(chutes_emulator, *command, "--json")
        assert as_json.returncode == 0 and as_json.json["outcome"] == "unknown"
    downloaded = await cli(chutes_emulator, "download", job_id, "--out", str(tmp_path), "--json")
    assert downloaded.returncode == 0 and downloaded.json["outcome"] == "unknown"
    assert len(downloaded.lines("notice: ")) == 1


async def test_bulk_exits_1_when_a_job_failed(chutes_emulator: Emulator, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"message": "first"}\n{"message": "second"}\n')
    ran = await cli(chutes_emulator, "bulk", "demo", "fail", "--inputs", str(inputs), "--json")
    assert ran.returncode == 1
    *results, summary = [json.loads(line) for line in ran.stdout.splitlines()]
    assert {r["outcome"] for r in results} == {"failed"}
    assert {r["job_outcome"] for r in results} == {"failed"}
    assert sorted(r["error"].rsplit(": ", 1)[1] for r in results) == ["first", "second"]
    assert summary["exit_code"] == 1


async def test_an_oauth_token_through_the_option_and_the_environment(
    chutes_emulator: Emulator,
) -> None:
    token = chutes_emulator.add_oauth_token()
    by_option = await cli(
        chutes_emulator, "submit", "demo", "echo", "--api-key", token, CHUTES_API_KEY=""
    )
    assert by_option.returncode == 0, by_option.stderr
    by_env = await cli(chutes_emulator, "submit", "demo", "echo", CHUTES_API_KEY=token)
    assert by_env.returncode == 0, by_env.stderr
    assert len(chutes_emulator.store.jobs) == 2

    read_only = chutes_emulator.add_oauth_token([SCOPE_READ])
    refused = await cli(chutes_emulator, "-vv", "submit", "demo", "echo", "--api-key", read_only)
    assert refused.returncode == 3
    assert_one_error_line(refused, "403", "Token does not have permission for this resource")
    assert read_only not in refused.stdout + refused.stderr
    assert len(chutes_emulator.store.jobs) == 2
    status = await cli(chutes_emulator, "status", by_env.stdout.strip(), CHUTES_API_KEY=read_only)
    assert status.returncode == 0, status.stderr  # reading needs only the read scope


async def test_a_base_url_with_a_query_is_a_usage_error(chutes_emulator: Emulator) -> None:
    url = f"{chutes_emulator.base_url}/?sig=s3cr3t-in-query"
    ran = await cli(chutes_emulator, "status", "8c1d6f0e-3a52-4b7e-9f21-6d0b3c9e4a17",
                    CHUTES_BASE_URL=url)  # fmt: skip
    assert ran.returncode == 2
    assert_one_error_line(ran, "base_url", "query string")
    assert "s3cr3t-in-query" not in ran.stdout + ran.stderr
    assert chutes_emulator.counts["get"] == 0
