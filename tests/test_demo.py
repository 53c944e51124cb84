"""``chutes-jobs demo``: the whole lifecycle on the embedded emulator, end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from chutes_jobs import demo

MIB = 1024 * 1024
HANG_GUARD = 120


def run_demo_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTES_")}
    return subprocess.run(
        [sys.executable, "-m", "chutes_jobs", "demo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,  # no credentials anywhere
        timeout=HANG_GUARD,
    )


def test_default_demo_has_a_file_of_at_least_100_mib() -> None:
    sizes = demo.demo_sizes(128)
    assert len(sizes) >= 3 and max(sizes) >= 100 * MIB


def test_demo_command_end_to_end(tmp_path: Path) -> None:
    result = run_demo_command("--size-mib", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout
    assert "Traceback" not in result.stderr
    for step in range(1, 7):
        assert f"[{step}/6]" in result.stderr
    out = tmp_path / "chutes-demo-output"
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*.bin")}
    assert sizes == {"file_000.bin": 2 * MIB, "file_001.bin": 3 * MIB, "sub/file_002.bin": 65536}
    assert not list(out.rglob("*.part"))


def test_demo_command_json_and_rerun(tmp_path: Path) -> None:
    for _ in range(2):  # a second run overwrites the first one's files
        result = run_demo_command("--size-mib", "1", "--out", "here", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["verified"] is True
        assert report["sizes"]["file_000.bin"] == MIB
        for name, path in report["files"].items():
            digest = hashlib.sha256((tmp_path / path).read_bytes()).hexdigest()
            assert digest == report["sha256"][name]
        assert Path(report["files"]["file_000.bin"]).parent == tmp_path / "here"


async def test_run_demo_reports_each_step(tmp_path: Path) -> None:
    said: list[str] = []
    report = await demo.run_demo(tmp_path, size_mib=1, say=said.append, progress=False)
    assert report["verified"] is True
    assert said[0].startswith("[1/6] started a local Chutes Jobs API emulator at http://127.0.0.1:")
    assert any("sha256 verified" in line for line in said)
    assert said[-1] == f"[6/6] deleted job {report['job_id']}"


async def test_verify_catches_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"data")
    good = hashlib.sha256(b"data").hexdigest()
    assert await demo._verify({"f.bin": path}, {"f.bin": good}) == {"f.bin": True}
    assert await demo._verify({"f.bin": path}, {"f.bin": "0" * 64}) == {"f.bin": False}
