"""What the command says to a newcomer: credentials, disk sizes, bulk line numbers, and what
happens without the ``cli`` extra."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import HANG_GUARD, EmulatorThread, assert_one_error_line, base_env, cli, json_lines

#: A valid sr25519 seed (hex): only its form matters here, nothing is signed.
HOTKEY_SEED = "0x" + "1" * 64


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    server = EmulatorThread(host="127.0.0.1", port=0, schedule_delay=0.01)
    yield server
    server.close()


def test_a_hotkey_alone_cannot_read_and_the_cli_says_how_to_fix_it(emu: EmulatorThread) -> None:
    pytest.importorskip("bittensor_wallet")
    env = base_env(CHUTES_BASE_URL=emu.emulator.base_url, CHUTES_HOTKEY_SEED=HOTKEY_SEED)
    result = subprocess.run(
        [sys.executable, "-m", "chutes_jobs", "status", "some-job"],
        capture_output=True, text=True, env=env, timeout=HANG_GUARD,
    )  # fmt: skip
    assert result.returncode == 2
    assert_one_error_line(result, "needs an API key", "pass --api-key KEY or set CHUTES_API_KEY")
    assert "api_key=" not in result.stderr
    assert emu.emulator.counts["get"] == 0


def test_disk_gb_help_says_what_the_server_accepts() -> None:
    text = " ".join(cli("submit", "--help").stdout.split())
    assert "Disk size in GB: 11 to 999 (without it the server gives 10)" in text


@pytest.mark.parametrize("value", ["11", "999"])
def test_disk_gb_bounds_are_accepted(emu: EmulatorThread, value: str) -> None:
    result = cli("submit", "demo", "echo", "--disk-gb", value, "--json", emu=emu)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["job_args"]["_disk_gb"] == int(value)


def test_bulk_names_inputs_by_their_line_from_1(emu: EmulatorThread, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"n": 1}\n\n{"n": 3}\n')  # a blank line is skipped but counted
    result = cli("bulk", "demo", "echo", "--inputs", str(inputs), "--json", emu=emu)
    assert result.returncode == 0, result.stderr
    *results, _ = json_lines(result)
    lines = {r["line"]: r for r in results}
    assert sorted(lines) == [1, 3]
    text = cli("bulk", "demo", "echo", "--inputs", str(inputs), "--no-wait", emu=emu)
    assert sorted(line.split(":")[0] for line in text.stdout.splitlines()[:2]) == [
        "line 1",
        "line 3",
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"n": 1}\n\n{oops\n')
    refused = cli("bulk", "demo", "echo", "--inputs", str(bad), emu=emu)
    assert refused.returncode == 2 and "line 3: not JSON" in refused.stderr


def test_bulk_help_says_how_inputs_are_numbered() -> None:
    text = " ".join(cli("bulk", "--help").stdout.split())
    assert "by their line in --inputs, counted from 1" in text


def test_bulk_summary_counts_the_jobs_created(emu: EmulatorThread, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"count": 1, "size": 10, "seed": n}) + "\n"
                              for n in range(4)))  # fmt: skip
    out = tmp_path / "out"
    result = cli("bulk", "demo", "files", "--inputs", str(inputs), "--out", str(out), "--json",
                 emu=emu)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json_lines(result)[-1]["summary"]
    assert (summary["jobs"], summary["created"], summary["resumed"]) == (4, 4, 0)
    assert summary["outcomes"]["downloaded"] == 4 and summary["outcomes"]["submitted"] == 0


# -- without the cli extra ----------------------------------------------------------------

#: Runs the command as its console script or ``python -m`` does, with a module made missing.
WITHOUT = """
import runpy, sys
sys.modules[{missing!r}] = None  # `import {missing}` now raises ImportError
sys.argv = ["chutes-jobs", *{argv!r}]
if {as_module!r}:
    runpy.run_module("chutes_jobs", run_name="__main__")
else:
    from chutes_jobs.cli import main
    main()
"""


@pytest.mark.parametrize("missing", ["click", "rich"])
@pytest.mark.parametrize("as_module", [True, False], ids=["python -m chutes_jobs", "script"])
def test_without_the_cli_extra_exit_2_and_say_what_to_install(
    missing: str, as_module: bool
) -> None:
    code = WITHOUT.format(missing=missing, argv=["demo"], as_module=as_module)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: the chutes-jobs command needs the cli extra (click, rich): "
        "pip install 'chutes-jobs[cli]'"
    )
    assert result.stdout == ""


def test_psycopg_logs_go_through_the_cli_handler_redacted_and_only_with_v(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # psycopg's pool warned of each reconnection to a shared ledger's database on stderr,
    # multi-line and without -v.
    import logging

    from chutes_jobs.cli._app import setup_logging

    loggers = [logging.getLogger(name) for name in ("chutes_jobs", "psycopg")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        setup_logging(0)
        logging.getLogger("psycopg.pool").warning("error connecting: password=hunter2")
        assert capsys.readouterr().err == ""
        setup_logging(1)
        logging.getLogger("psycopg.pool").warning("error connecting: password=hunter2")
        err = capsys.readouterr().err
        assert err.startswith("chutes-jobs: error connecting") and "hunter2" not in err
    finally:
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.propagate = handlers, propagate
            lg.setLevel(level)
