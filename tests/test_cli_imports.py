"""Commands import only what they use: ``--help`` and ``status`` start without the emulator,
JWT, cryptography, rich, the bulk ledger (sqlite3) or importlib.metadata (timings:
``benchmarks/bench_cli_startup.py``, not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import HANG_GUARD, EmulatorThread, as_json, base_env, cli

#: Run the command in this interpreter, then list every module it imported.
LIST_MODULES = """
import json, runpy, sys
sys.argv = ["chutes-jobs", *{argv!r}]
try:
    runpy.run_module("chutes_jobs", run_name="__main__")
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""

NOT_NEEDED = [
    "chutes_jobs.emulator", "chutes_jobs.demo", "jwt", "cryptography", "rich", "sqlite3",
    "chutes_jobs.bulk.ledger", "chutes_jobs.bulk.run", "importlib.metadata", "bittensor_wallet",
]  # fmt: skip


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    server = EmulatorThread(host="127.0.0.1", port=0, schedule_delay=0.01)
    yield server
    server.close()


def imported_by(argv: list[str], emu: EmulatorThread) -> tuple[int, set[str]]:
    env = base_env(CHUTES_BASE_URL=emu.emulator.base_url, CHUTES_API_KEY=emu.emulator.api_key)
    result = subprocess.run(
        [sys.executable, "-c", LIST_MODULES.format(argv=argv)],
        capture_output=True, text=True, env=env, timeout=HANG_GUARD,
    )  # fmt: skip
    report = json.loads(result.stdout.splitlines()[-1])
    return report["code"], {m for m in report["modules"] if not m.startswith("_")}


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def test_help_and_status_import_only_what_they_use(emu: EmulatorThread) -> None:
    job_id = as_json(cli("submit", "demo", "echo", "--json", emu=emu))["job_id"]
    for argv in (["--help"], ["status", job_id], ["status", "--help"], ["ledger", "ls", "--help"]):
        code, modules = imported_by(argv, emu)
        assert code in (0, None), argv
        assert "chutes_jobs.session" in modules or "--help" in argv
        assert [name for name in NOT_NEEDED if loaded(modules, name)] == [], argv


def test_ledger_ls_help_lists_the_states_without_loading_a_ledger() -> None:
    result = cli("ledger", "ls", "--help")
    assert result.returncode == 0
    assert "[todo|creating|submitted|unknown|finished|failed|downloaded|" in result.stdout


def test_bulk_and_demo_still_load_what_they_need(emu: EmulatorThread, tmp_path: Path) -> None:
    code, modules = imported_by(["bulk", "demo", "echo", "--inputs", "/dev/null"], emu)
    assert code == 0 and loaded(modules, "chutes_jobs.bulk.run")
    assert not loaded(modules, "sqlite3")  # no --ledger: no ledger backend
    ledger = ["--ledger", str(tmp_path / "run.db")]
    code, modules = imported_by(["bulk", "demo", "echo", "--inputs", "/dev/null", *ledger], emu)
    assert code == 0 and loaded(modules, "chutes_jobs.bulk.ledger") and loaded(modules, "sqlite3")
    code, modules = imported_by(["ledger", "ls", str(tmp_path / "run.db")], emu)
    assert code == 0 and loaded(modules, "sqlite3")
    code, modules = imported_by(["demo", "--size-mib", "1", "--out", "/dev/null/x"], emu)
    assert loaded(modules, "chutes_jobs.emulator") and loaded(modules, "jwt")
