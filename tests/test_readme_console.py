"""README's command-line session runs as written, in order, in one shell (so it cannot rot).

Two lines are adapted, and only so that the test can run beside other tests: the emulator
listens on a free port instead of 8000, and the ``export`` line takes the URL and key the
emulator printed (the README says "as it printed") instead of the ``cpk_...`` placeholder.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli_support import HANG_GUARD, EmulatorThread, base_env

README = Path(__file__).resolve().parent.parent / "README.md"
INTRO = "These run in order, as written, in one shell"


def readme_session(intro: str = INTRO) -> list[str]:
    """The commands of the console block after ``intro``, without their ``$ ``."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```console\n(.*?)```", text[text.index(intro) :], re.S)
    assert block is not None
    return [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def adapted(commands: list[str], port: int) -> str:
    """The session as a bash script, with the two adaptations above."""
    lines = ["set -euo pipefail"]
    for command in commands:
        if command.startswith("chutes-jobs emulator --port 8000 &"):
            lines.append(f"chutes-jobs emulator --port {port} > emulator.txt &")
            lines.append("until grep -q '^export' emulator.txt; do sleep 0.05; done")
        elif command.startswith("export CHUTES_BASE_URL="):
            lines.append("eval \"$(grep '^export' emulator.txt)\"")
        else:
            lines.append(command)
    lines.append("wait")  # the emulator's exit status: 0 after SIGTERM
    return "\n".join(lines) + "\n"


def test_readme_session_runs_as_written(tmp_path: Path) -> None:
    commands = readme_session()
    assert commands[0].startswith("chutes-jobs demo ") and commands[-1].startswith("kill %1")
    assert any(c.startswith("echo '{") and "> args.json" in c for c in commands)
    outs = [re.search(r"--out (\S+)", c) for c in commands]
    folders = [m.group(1) for m in outs if m is not None]
    assert len(folders) == len(set(folders)) == 3  # download, run and bulk: a folder each

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "chutes-jobs"  # this interpreter's command, first on PATH
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m chutes_jobs "$@"\n')
    script.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = base_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "-c", adapted(commands, free_port())],
        cwd=work, env=env, capture_output=True, text=True, timeout=HANG_GUARD * 3,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    out = result.stdout.splitlines()
    assert "all 3 files verified (sha256) in chutes-demo-output/" in out
    assert any(line.startswith("deleted job ") for line in out)
    assert sorted(p.name for p in (work / "results/one").rglob("*.bin")) == [
        "file_000.bin",
        "file_001.bin",
    ]
    assert len(list((work / "results/run").rglob("*.bin"))) == 3
    bulk_jobs = [p for p in (work / "results/bulk").iterdir() if p.is_dir()]
    assert len(bulk_jobs) == 3 and all((p / "file_000.bin").exists() for p in bulk_jobs)
    assert "3 inputs: 3 downloaded; 3 jobs (3 created, 0 resumed); 0 with errors" in out


MANY_MACHINES = "On one machine, two processes"


def test_readme_many_machines_session_runs_as_written(postgres_url: str, tmp_path: Path) -> None:
    """The "Many machines" session, against an emulator and this test's database: only the
    ``export LEDGER=`` line is adapted (the URL)."""
    commands = readme_session(MANY_MACHINES)
    assert commands[0].startswith("export LEDGER=postgresql://")
    script = ["set -euo pipefail", f"export LEDGER='{postgres_url}'", *commands[1:]]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "chutes-jobs"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m chutes_jobs "$@"\n')
    launcher.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    emu = EmulatorThread(port=0)
    try:
        path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        env = base_env(
            PATH=path, CHUTES_BASE_URL=emu.emulator.base_url, CHUTES_API_KEY=emu.emulator.api_key
        )
        result = subprocess.run(["bash", "-c", "\n".join(script) + "\n"], cwd=work, env=env,
                                capture_output=True, text=True, timeout=HANG_GUARD * 3)  # fmt: skip
        creates = emu.creates()
    finally:
        emu.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    # the two processes shared the 40 inputs: each created once, all downloaded
    assert creates == 40
    runs = [json_lines_of(work / name) for name in ("one.jsonl", "two.jsonl")]
    worked = [r["line"] for run in runs for r in run[:-1]]
    assert sorted(worked) == list(range(1, 41))
    assert all(r["outcome"] == "downloaded" for run in runs for r in run[:-1])
    for run in runs:
        assert run[-1]["summary"]["batch"]["downloaded"] == 40 and run[-1]["exit_code"] == 0
    assert len([p for p in (work / "shared-out").iterdir() if p.is_dir()]) == 40
    status = result.stdout.splitlines()
    assert status[0].endswith(": 40 inputs") and "downloaded 40" in status[1]
    # a line per process that wrote rows (on a busy machine one may find the batch done),
    # then the rate pause
    words = [line.split()[0] for line in status[2:]]
    assert words in (["process", "rate"], ["process", "process", "rate"]), status
    # and `ledger ls --state unknown` listed nothing (no line after the status)


def json_lines_of(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
