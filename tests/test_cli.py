"""The ``chutes-jobs`` command, run as a user runs it: in a subprocess, against the emulator
(see ``cli_support``)."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    HANG_GUARD,
    MIB,
    SECRET_KEY,
    EmulatorThread,
    as_json,
    assert_one_error_line,
    cli,
    closed_port,
    finished_job,
    json_lines,
    popen,
)

from chutes_jobs._progress import BulkDisplay, ProgressDisplay
from chutes_jobs.demo import sha256_file
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator import downloads as emulator_downloads
from chutes_jobs.models import JobState
from chutes_jobs.transfer import TransferProgress


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    server = EmulatorThread(host="127.0.0.1", port=0, expose_status=True, schedule_delay=0.01)
    yield server
    server.close()


# -- help ---------------------------------------------------------------------------------


def test_help_documents_commands_and_exit_codes() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for name in ("demo", "emulator", "submit", "status", "wait", "download", "delete", "run"):
        assert name in result.stdout
    assert "bulk" in result.stdout
    assert "Exit codes: 0 ok, 1 job failed, 2 usage error, 3 API" in result.stdout
    assert "130 interrupted" in result.stdout
    bulk_help = cli("bulk", "--help")
    assert bulk_help.returncode == 0 and "Exit codes" in bulk_help.stdout


def test_module_cli_is_runnable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chutes_jobs.cli", "status", "--help"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert result.returncode == 0
    assert "JOB_ID" in result.stdout


# -- one job, --json ----------------------------------------------------------------------


def test_job_lifecycle_json(emu: EmulatorThread, tmp_path: Path) -> None:
    args = ["--arg", "count:=2", "--arg", "size:=3000", "--json"]
    submitted = as_json(cli("submit", "demo", "files", *args, emu=emu))
    job_id = submitted["job_id"]
    assert submitted["method"] == "files" and submitted["job_args"]["count"] == 2

    waited = cli("wait", job_id, "--json", emu=emu)
    assert waited.returncode == 0, waited.stderr
    final = as_json(waited)
    assert final["status"] == "complete" and final["finished_at"] is not None

    status = as_json(cli("status", job_id, "--json", emu=emu))
    assert status["job_id"] == job_id and status["status"] == "complete"

    out = tmp_path / "out"
    downloaded = as_json(cli("download", job_id, "--out", str(out), "--json", emu=emu))
    assert downloaded["job_id"] == job_id
    assert set(downloaded["paths"]) == {"file_000.bin", "sub/file_001.bin"}
    for name, digest in final["result"]["files"].items():
        assert sha256_file(Path(downloaded["paths"][name])) == digest

    deleted = as_json(cli("delete", job_id, "--json", emu=emu))
    assert deleted == {"job_id": job_id, "outcome": "deleted"}
    gone = cli("status", job_id, "--json", emu=emu)
    assert gone.returncode == 3 and gone.stdout == ""
    assert_one_error_line(gone, "404", job_id)


def test_text_output_is_short(emu: EmulatorThread, tmp_path: Path) -> None:
    submitted = cli("submit", "demo", "files", "--arg", "count:=1", emu=emu)
    job_id = submitted.stdout.strip()
    assert submitted.returncode == 0 and len(job_id) == 36
    waited = cli("wait", job_id, emu=emu)
    assert waited.stdout.strip() == f"job {job_id}: finished (complete)"
    assert "finished" not in waited.stderr  # told once, on stdout
    downloaded = cli("download", job_id, "--out", str(tmp_path), emu=emu)
    assert downloaded.stdout.strip() == str(tmp_path / "file_000.bin")


def test_download_refuses_to_overwrite_unless_told(emu: EmulatorThread, tmp_path: Path) -> None:
    job = finished_job(emu, "demo.files", "--arg", "count:=1")
    assert cli("download", job["job_id"], "--out", str(tmp_path), emu=emu).returncode == 0
    again = cli("download", job["job_id"], "--out", str(tmp_path), emu=emu)
    assert again.returncode == 3
    assert_one_error_line(again, "exists", "--overwrite")
    forced = cli("download", job["job_id"], "--out", str(tmp_path), "--overwrite", emu=emu)
    assert forced.returncode == 0


def test_run_json(emu: EmulatorThread, tmp_path: Path) -> None:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"count": 2, "size": 100, "seed": 7}))
    result = cli("run", "demo", "files", "--args-json", str(args_file), "--out", "o", "--json",
                 emu=emu, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = as_json(result)
    assert data["job"]["job_args"]["seed"] == 7
    assert sorted(data["paths"]) == ["file_000.bin", "sub/file_001.bin"]
    for name, digest in data["job"]["result"]["files"].items():
        assert sha256_file(tmp_path / data["paths"][name]) == digest


def test_args_json_from_stdin(emu: EmulatorThread) -> None:
    result = cli("submit", "demo", "echo", "--args-json", "-", "--arg", "b:=2", "--json",
                 emu=emu, stdin='{"a": "x", "b": 1}')  # fmt: skip
    assert as_json(result)["job_args"] == {"a": "x", "b": 2, "_disk_gb": 10}


# -- exit codes ---------------------------------------------------------------------------


def test_failed_job_exits_1_on_wait_and_run(emu: EmulatorThread, tmp_path: Path) -> None:
    ran = cli("run", "demo", "fail", "--out", str(tmp_path / "o"), "--json", emu=emu)
    assert ran.returncode == 1
    assert as_json(ran)["job"]["status"] == "error"
    assert_one_error_line(ran, "failed", "RuntimeError: demo failure")
    assert not (tmp_path / "o").exists()

    job_id = as_json(ran)["job"]["job_id"]
    waited = cli("wait", job_id, emu=emu)
    assert waited.returncode == 1
    assert_one_error_line(waited, job_id, "demo failure")


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["submit", "demo", "echo", "--arg", "novalue"], None, "NAME=TEXT or NAME:=JSON"),
        (["submit", "demo", "echo", "--arg", "=1"], None, "NAME=TEXT or NAME:=JSON"),
        (["submit", "demo", "echo", "--arg", ":=1"], None, "NAME=TEXT or NAME:=JSON"),
        (["submit", "demo", "echo", "--arg", "sizes:=[1000,"], None, "not JSON"),
        (["submit", "demo", "echo", "--arg", "x:=NaN"], None, "not JSON"),
        (["run", "demo", "echo", "--out", "o", "--arg", "x:={oops}"], None, "not JSON"),
        (["submit", "demo", "echo", "--args-json", "-"], "{not json", "not JSON"),
        (["submit", "demo", "echo", "--args-json", "-"], "[1, 2]", "JSON object"),
        (["submit", "demo", "echo", "--args-json", "/nonexistent/args.json"], None, "cannot read"),
        (["submit", "demo", "echo", "--disk-gb", "10"], None, "accepts 11 to 999 GB"),
        (["run", "demo", "echo", "--out", "o", "--disk-gb", "1000"], None, "accepts 11 to 999"),
        (["submit", "demo", "echo", "--disk-gb", "big"], None, "--disk-gb"),
        (["submit", "demo", "echo", "--disk-gb", "20.5"], None, "--disk-gb"),
        (["submit", "demo"], None, "METHOD"),
        (["wait", "x", "--timeout", "-1"], None, "--timeout"),
        (["nosuchcommand"], None, "No such command"),
    ],
)
def test_usage_errors_exit_2(
    emu: EmulatorThread, args: list[str], stdin: str | None, needle: str
) -> None:
    before = emu.creates()
    result = cli(*args, emu=emu, stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert emu.creates() == before


@pytest.mark.parametrize(
    ("args_json", "needle"),
    [
        ('{"_disk_gb": 5}', "disk_gb must be greater than 10"),
        ('{"_disk_gb": true}', "disk_gb must be a number"),
    ],
)
def test_configuration_errors_exit_2(emu: EmulatorThread, args_json: str, needle: str) -> None:
    before = emu.creates()
    result = cli("submit", "demo", "echo", "--args-json", "-", emu=emu, stdin=args_json)
    assert result.returncode == 2
    assert_one_error_line(result, needle)
    assert emu.creates() == before


def test_disk_gb_given_twice_exits_2(emu: EmulatorThread) -> None:
    result = cli("submit", "demo", "echo", "--arg", "_disk_gb:=20", "--disk-gb", "30", emu=emu)
    assert result.returncode == 2
    assert "either as --disk-gb or as the job argument _disk_gb" in result.stderr
    assert "disk_gb=" not in result.stderr


@pytest.mark.parametrize("command", ["status", "wait", "download", "delete"])
def test_unknown_job_exits_3(emu: EmulatorThread, command: str, tmp_path: Path) -> None:
    job_id = "00000000-0000-4000-8000-000000000000"
    extra = ["--out", str(tmp_path)] if command == "download" else []
    result = cli(command, job_id, *extra, emu=emu)
    if command == "delete":  # an unknown job is already gone: deleting it succeeds
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"job {job_id} not found (already deleted, or not yours)"
        as_json_result = cli(command, job_id, "--json", emu=emu)
        assert as_json(as_json_result) == {"job_id": job_id, "outcome": "not_found"}
        return
    assert result.returncode == 3
    assert_one_error_line(result, "404", "Job not found")


def test_unknown_chute_exits_3(emu: EmulatorThread) -> None:
    result = cli("submit", "nochute", "echo", emu=emu)
    assert result.returncode == 3
    assert_one_error_line(result, "chute 'nochute' not found, or it has no job method 'echo'")


@pytest.mark.parametrize("command", ["submit", "run"])
def test_unknown_method_is_named(emu: EmulatorThread, command: str, tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path)] if command == "run" else []
    result = cli(command, "demo", "nosuchmethod", *extra, emu=emu)
    assert result.returncode == 3
    assert_one_error_line(result, "chute 'demo' not found, or it has no job method 'nosuchmethod'")


def test_unreachable_server_exits_3() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = cli("status", "some-job", "--base-url", url, "--api-key", SECRET_KEY,
                 "--retries", "0")  # fmt: skip
    assert result.returncode == 3
    assert_one_error_line(result, "could not connect")
    assert "ssl:" not in result.stderr  # aiohttp's TLS setting means nothing for http://


def test_wait_timeout_exits_4(emu: EmulatorThread) -> None:
    job_id = as_json(cli("submit", "demo", "sleep", "--arg", "seconds:=60", "--json", emu=emu))[
        "job_id"
    ]
    try:
        result = cli("wait", job_id, "--timeout", "0.3", emu=emu)
        assert result.returncode == 4
        assert_one_error_line(result, "did not finish", "keeps running")
    finally:
        assert cli("delete", job_id, emu=emu).returncode == 0


def test_wait_retries_polls_answered_200_with_no_json_object(emu: EmulatorThread) -> None:
    """An empty body, JSON cut short (with a matching length), an HTML page: each is retried
    like a 5xx, and the wait ends with the finished job."""
    job_id = as_json(cli("submit", "demo", "echo", "--json", emu=emu))["job_id"]

    async def plan() -> list[Any]:
        faults = emu.emulator.faults
        return [
            faults.add("get", clip_to=0),
            faults.add("get", clip_to=50),
            faults.add("get", status=200, html=True),
        ]

    faults = emu.call(plan())
    try:
        waited = cli("wait", job_id, "--json", emu=emu)
    finally:
        emu.call(_clear_faults(emu.emulator))
    assert waited.returncode == 0, waited.stderr
    assert as_json(waited)["status"] == "complete"
    assert [f.fired for f in faults] == [1, 1, 1]  # all three met by the one wait


async def _clear_faults(emulator: Emulator) -> None:
    emulator.faults.clear()


def test_missing_credentials_exit_2(emu: EmulatorThread) -> None:
    result = cli("status", "some-job", "--base-url", emu.emulator.base_url)
    assert result.returncode == 2
    assert_one_error_line(result, "no credentials: pass --api-key KEY or set CHUTES_API_KEY")
    assert "api_key=" not in result.stderr


# -- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-vv", "status", "00000000-0000-4000-8000-000000000000"],  # 401 from the emulator
        ["-vv", "submit", "demo", "echo", "--arg", "a:=1"],
        ["-vv", "bulk", "demo", "echo", "--inputs", "-", "--json"],
        ["-vv", "status", "x", "--base-url", "http://127.0.0.1:{closed}", "--retries", "1"],
        ["status", "x", "--base-url", "http://example.invalid"],  # refused before sending
    ],
)
def test_api_key_never_printed(emu: EmulatorThread, args: list[str]) -> None:
    args = [a.replace("{closed}", str(closed_port())) for a in args]
    if "--base-url" not in args:
        args += ["--base-url", emu.emulator.base_url]
    result = cli(*args, "--api-key", SECRET_KEY, stdin='{"a": 1}\n')
    assert result.returncode in (2, 3), result.stderr
    assert "Traceback" not in result.stderr
    for secret in (SECRET_KEY, SECRET_KEY[4:20], SECRET_KEY[-20:]):
        assert secret not in result.stdout
        assert secret not in result.stderr


# -- bulk ---------------------------------------------------------------------------------


def write_inputs(path: Path, inputs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in inputs) + "\n")
    return path


def test_bulk_json_and_ledger_rerun(emu: EmulatorThread, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"count": 1, "size": 500, "seed": s}
                                                  for s in range(3)])  # fmt: skip
    args = ["bulk", "demo", "files", "--inputs", str(inputs), "--out", str(tmp_path / "out"),
            "--ledger", str(tmp_path / "ledger.db"), "--concurrency", "2", "--json"]  # fmt: skip
    before = emu.creates()
    first = cli(*args, emu=emu)
    assert first.returncode == 0, first.stderr
    *results, summary = json_lines(first)
    assert sorted(r["line"] for r in results) == [1, 2, 3]
    assert {r["outcome"] for r in results} == {"downloaded"}
    for r in results:
        assert Path(r["paths"]["file_000.bin"]).parent == tmp_path / "out" / r["job_id"]
        assert r["error"] is None and r["resumed"] is False
    assert summary == {
        "summary": {"inputs": 3, "jobs": 3, "created": 3, "resumed": 0, "errors": 0,
                    "outcomes": {"submitted": 0, "finished": 0, "failed": 0, "downloaded": 3,
                                 "not_submitted": 0, "unknown": 0}},
        "exit_code": 0,
    }  # fmt: skip
    assert emu.creates() == before + 3

    again = cli(*args, emu=emu)
    assert again.returncode == 0, again.stderr
    *rerun, summary = json_lines(again)
    assert emu.creates() == before + 3  # nothing created twice
    assert {r["job_id"] for r in rerun} == {r["job_id"] for r in results}
    assert all(r["resumed"] for r in rerun)
    assert summary["summary"]["resumed"] == 3 and summary["summary"]["created"] == 0


def test_bulk_text_output_and_failed_jobs(emu: EmulatorThread, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"message": "boom"}, {"message": "bang"}])
    result = cli("bulk", "demo", "fail", "--inputs", str(inputs), emu=emu)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert sorted(line.split(":")[0] for line in lines[:2]) == ["line 1", "line 2"]
    assert all(" failed job " in line for line in lines[:2])
    assert lines[2] == "2 inputs: 2 failed; 2 jobs (2 created, 0 resumed); 2 with errors"
    assert "Traceback" not in result.stderr


def test_bulk_not_submitted_exits_3(emu: EmulatorThread, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"a": 1}])
    result = cli("bulk", "nochute", "echo", "--inputs", str(inputs), "--json", emu=emu)
    assert result.returncode == 3
    (line, summary) = json_lines(result)
    assert line["outcome"] == "not_submitted" and "not found" in line["error"]
    assert "chute 'nochute' not found, or it has no job method 'echo'" in line["error"]
    assert summary["summary"]["outcomes"]["not_submitted"] == 1 and summary["exit_code"] == 3
    assert summary["summary"]["jobs"] == 0


def test_bulk_no_wait(emu: EmulatorThread, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"n": 1}, {"n": 2}])
    result = cli("bulk", "demo", "echo", "--inputs", str(inputs), "--no-wait", "--json", emu=emu)
    assert result.returncode == 0, result.stderr
    *results, summary = json_lines(result)
    assert {r["outcome"] for r in results} == {"submitted"}
    assert summary["summary"]["outcomes"]["submitted"] == 2
    assert summary["summary"]["created"] == 2


@pytest.mark.parametrize(
    ("lines", "extra", "needle"),
    [
        ('{"a": 1}\n{oops\n', [], "line 2: not JSON"),
        ('{"a": 1}\n[1]\n', [], "line 2: expected a JSON object"),
        ('{"a": 1}\n', ["--no-wait", "--out", "o"], "--out"),
    ],
)
def test_bulk_bad_inputs_exit_2_before_any_create(
    emu: EmulatorThread, tmp_path: Path, lines: str, extra: list[str], needle: str
) -> None:
    (tmp_path / "in.jsonl").write_text(lines)
    before = emu.creates()
    result = cli("bulk", "demo", "echo", "--inputs", "in.jsonl", *extra, emu=emu, cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr
    assert emu.creates() == before


# -- Ctrl-C and resume --------------------------------------------------------------------


@pytest.fixture
def slow_first_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulator downloads from byte 0 send 4 MiB at once, then trickle; resumes run at speed."""
    original = emulator_downloads._copy

    async def trickle(request: Any, response: Any, path: Path, offset: int, count: int) -> None:
        if offset > 0 or count <= 4 * MIB:
            await original(request, response, path, offset, count)
            return
        await original(request, response, path, 0, 4 * MIB)
        for start in range(4 * MIB, count, 128 * 1024):
            await original(request, response, path, start, min(128 * 1024, count - start))
            await asyncio.sleep(0.05)

    monkeypatch.setattr(emulator_downloads, "_copy", trickle)


def wait_for_bytes(path: Path, process: subprocess.Popen[str]) -> None:
    """Until ``path`` holds some bytes (the download is under way)."""
    deadline = time.monotonic() + HANG_GUARD
    while not (path.exists() and path.stat().st_size > 0):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)


@pytest.mark.usefixtures("slow_first_download")
def test_ctrl_c_keeps_part_and_download_resumes(emu: EmulatorThread, tmp_path: Path) -> None:
    size = 24 * MIB
    job = finished_job(emu, "demo.files", "--arg", f"sizes:=[{size}]")
    job_id, digest = job["job_id"], job["result"]["files"]["file_000.bin"]
    part = tmp_path / "file_000.bin.part"

    process = popen("download", job_id, "--out", str(tmp_path), emu=emu)
    wait_for_bytes(part, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    assert "interrupted" in stderr and ".part" in stderr
    kept = part.stat().st_size
    assert 0 < kept < size
    assert not (tmp_path / "file_000.bin").exists()

    resumed = cli("download", job_id, "--out", str(tmp_path), "--json", emu=emu)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_file(tmp_path / "file_000.bin") == digest
    assert not part.exists()
    ranges = [
        r.headers.get("Range")
        for r in emu.emulator.requests
        if r.route == "download" and r.path.startswith(f"/jobs/{job_id}/")
    ]
    assert ranges == [None, f"bytes={kept}-"]


def test_ctrl_c_during_bulk_keeps_the_ledger(emu: EmulatorThread, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"seconds": 30 + n} for n in range(3)])
    args = ["bulk", "demo", "sleep", "--inputs", str(inputs), "--ledger", str(tmp_path / "l.db")]
    before = emu.creates()
    process = popen(*args, emu=emu)
    deadline = time.monotonic() + HANG_GUARD
    while emu.creates() < before + 3:  # every job created; the command now waits on them
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the jobs were never created"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 130
    assert "Traceback" not in stderr and "run the same command again" in stderr

    rerun = cli(*args, "--no-wait", "--json", emu=emu)
    assert rerun.returncode == 0, rerun.stderr
    *results, _ = json_lines(rerun)
    assert emu.creates() == before + 3
    assert len(results) == 3 and all(r["resumed"] for r in results)
    for r in results:
        assert cli("delete", r["job_id"], emu=emu).returncode == 0


# -- the emulator command -----------------------------------------------------------------


def read_banner(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.communicate()
    info: dict[str, Any] = json.loads(line)
    return info


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_emulator_command_serves_until_stopped(sig: int, code: int, tmp_path: Path) -> None:
    process = popen("emulator", "--port", "0", "--json", "--data-dir", str(tmp_path))
    try:
        info = read_banner(process)
        assert info["base_url"].startswith("http://127.0.0.1:")
        assert info["api_key"].startswith("cpk_") and info["demo_chute_id"]
        submitted = cli("submit", "demo", "echo", "--arg", "x:=1", "--base-url", info["base_url"],
                        "--api-key", info["api_key"], "--json")  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        assert as_json(submitted)["job_args"]["x"] == 1
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code
    assert "Traceback" not in stderr


def test_emulator_command_text_banner(tmp_path: Path) -> None:
    process = popen("emulator", "--port", "0", "--no-range", "--live-quirks")
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Chutes Jobs emulator at http://127.0.0.1:")
        assert process.stdout.readline().startswith("API key: cpk_")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert "emulator stopped" in stderr and "Traceback" not in stderr


def test_emulator_port_in_use_exits_3(emu: EmulatorThread) -> None:
    result = cli("emulator", "--port", str(emu.emulator.port))
    assert result.returncode == 3
    assert_one_error_line(result)


# -- displays -----------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal() -> None:
    terminal, pipe = FakeTerminal(), io.StringIO()
    for stream in (terminal, pipe):
        with ProgressDisplay("download", stream=stream) as display:
            display.update(TransferProgress("big.bin", MIB, 4 * MIB))
            display.update(TransferProgress("big.bin", 2 * MIB, 4 * MIB))  # throttled on a pipe
            display.update(TransferProgress("big.bin", 4 * MIB, 4 * MIB))
    assert "big.bin" in terminal.getvalue() and "\x1b" in terminal.getvalue()
    assert pipe.getvalue().splitlines() == [
        "download big.bin: 1.0 MiB of 4.0 MiB",
        "download big.bin: 4.0 MiB of 4.0 MiB",
    ]


def test_bulk_counters() -> None:
    display = BulkDisplay(stream=io.StringIO())
    with display:
        display.job_seen("a", JobState.PENDING)
        display.job_seen("b", JobState.PENDING)
        display.job_seen("a", JobState.RUNNING)
        assert display.summary() == "submitted 2 · running 1 · done 0 · failed 0"
        display.result_done("a", ok=True)
        display.result_done("b", ok=False)
        display.result_done("c", ok=True)  # resumed from a ledger: never seen before
        display.result_done(None, ok=False)  # not submitted
    assert display.summary() == "submitted 3 · running 0 · done 2 · failed 2"


def test_bulk_counters_live_on_a_terminal() -> None:
    terminal = FakeTerminal()
    with BulkDisplay(stream=terminal) as display:
        display.job_seen("a", JobState.RUNNING)
    assert "running 1" in terminal.getvalue()


def test_bulk_shows_a_bar_per_file_while_it_downloads() -> None:
    terminal = FakeTerminal()
    with BulkDisplay(stream=terminal) as display:
        display.transfer(TransferProgress("job-1/a.bin", 512, 1024))
        display.transfer(TransferProgress("job-2/a.bin", 0, 2048))
        display.refresh()
        drawn = terminal.getvalue()
        display.transfer(TransferProgress("job-1/a.bin", 1024, 1024))
        display.transfer(TransferProgress("job-2/a.bin", 2048, 2048))
        display.refresh()
        assert display.transfers == []  # finished files leave the display
    assert "job-1/a.bin" in drawn and "job-2/a.bin" in drawn


def test_bulk_bars_are_not_drawn_off_a_terminal() -> None:
    pipe = io.StringIO()
    with BulkDisplay(stream=pipe) as display:
        display.transfer(TransferProgress("job-1/a.bin", 512, 1024))
    assert pipe.getvalue() == ""
