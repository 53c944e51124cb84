"""``chutes-jobs ledger status|ls|cancel`` and ``bulk --ledger postgresql://...``, run as a user
runs them: each command a fresh ``python -m chutes_jobs`` process, against an emulator served
from a thread of the test process, on a SQLite file and on a real PostgreSQL ledger."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import HANG_GUARD, EmulatorThread, base_env, cli
from cli_support import json_lines as lines


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    server = EmulatorThread(port=0, schedule_delay=0.01)
    yield server
    server.close()


def write_inputs(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "run.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_status_and_ls_read_the_book_of_a_batch(
    emu: EmulatorThread, ledger: str, tmp_path: Path
) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"i": i} for i in range(5)])
    ran = cli("bulk", "demo", "echo", "--inputs", str(inputs), "--ledger", ledger, "--no-wait",
              emu=emu)  # fmt: skip
    assert ran.returncode == 0, ran.stderr

    status = cli("ledger", "status", ledger, "--json")
    assert status.returncode == 0, status.stderr
    book = json.loads(status.stdout)
    assert (book["total"], book["counts"]["submitted"]) == (5, 5)
    shared = ledger.startswith("postgresql://")
    assert bool(book["processes"]) is shared  # a SQLite ledger is one process's
    assert (book["pause"] is not None) is shared
    text = cli("ledger", "status", ledger).stdout
    assert "5 inputs" in text and "submitted 5" in text

    listed = lines(cli("ledger", "ls", ledger, "--json"))
    assert [row["index"] for row in listed] == [0, 1, 2, 3, 4]
    assert all(row["state"] == "submitted" and row["job_id"] for row in listed)
    assert cli("ledger", "ls", ledger, "--state", "finished", "--json").stdout == ""
    first = cli("ledger", "ls", ledger).stdout.splitlines()[0]
    assert listed[0]["job_id"] in first and "submitted" in first


def test_cancel_deletes_unfinished_jobs_and_keeps_finished_ones(
    emu: EmulatorThread, ledger: str, tmp_path: Path
) -> None:
    rows = [{"seconds": 60 + i} for i in range(3)]
    sleeping = write_inputs(tmp_path / "sleep.jsonl", rows)
    ran = cli("bulk", "demo", "sleep", "--inputs", str(sleeping), "--ledger", ledger,
              "--no-wait", emu=emu)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    jobs = [row["job_id"] for row in lines(cli("ledger", "ls", ledger, "--json"))]

    cancelled = cli("ledger", "cancel", ledger, "--json", emu=emu)
    assert cancelled.returncode == 0, cancelled.stderr
    report = json.loads(cancelled.stdout)
    assert (report["deleted"], report["finished"], report["failed"]) == (3, 0, {})
    assert all(job not in emu.emulator.store.jobs for job in jobs)
    listed = lines(cli("ledger", "ls", ledger, "--state", "cancelled", "--json"))
    assert sorted(row["job_id"] for row in listed) == sorted(jobs)

    again = json.loads(cli("ledger", "cancel", ledger, "--json", emu=emu).stdout)
    assert (again["deleted"], again["not_created"]) == (0, 0)


def test_cancel_keeps_a_job_that_finished_meanwhile(emu: EmulatorThread, tmp_path: Path) -> None:
    ledger = str(tmp_path / "run.db")
    inputs = write_inputs(tmp_path / "in.jsonl", [{"i": 1}])
    assert cli("bulk", "demo", "echo", "--inputs", str(inputs), "--ledger", ledger, "--no-wait",
               emu=emu).returncode == 0  # fmt: skip
    [row] = lines(cli("ledger", "ls", ledger, "--json"))
    emu.call(emu.emulator.wait_job(row["job_id"]))
    report = cli("ledger", "cancel", ledger, emu=emu)
    assert report.returncode == 0 and "1 had finished (kept)" in report.stdout
    assert row["job_id"] in emu.emulator.store.jobs
    [after] = lines(cli("ledger", "ls", ledger, "--json"))
    assert after["state"] == "finished"


def test_on_a_terminal_bulk_draws_the_batch_totals_under_its_own(
    emu: EmulatorThread, postgres_url: str, tmp_path: Path
) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"i": i} for i in range(4)])
    leader, follower = os.openpty()  # stderr is a terminal: the live display is drawn
    env = base_env(CHUTES_BASE_URL=emu.emulator.base_url, CHUTES_API_KEY=emu.emulator.api_key,
                   TERM="xterm", COLUMNS="160")  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-m", "chutes_jobs", "bulk", "demo", "echo", "--inputs", str(inputs),
         "--ledger", postgres_url], stdout=subprocess.PIPE, stderr=follower, env=env, text=True,
    ) as bulk:  # fmt: skip
        os.close(follower)
        drawn = bytearray()
        reader = threading.Thread(target=_read_all, args=(leader, drawn))
        reader.start()
        out, _ = bulk.communicate(timeout=HANG_GUARD)
        reader.join(HANG_GUARD)
    os.close(leader)
    assert bulk.returncode == 0, drawn.decode(errors="replace")
    assert len(out.splitlines()) == 6  # four results, the summary and the batch's totals
    screen = drawn.decode(errors="replace")
    assert "submitted 4 · running 0 · done 4 · failed 0" in screen
    assert "batch (every process): finished 4" in screen


def _read_all(fd: int, into: bytearray) -> None:
    """Read a terminal until its other side is closed (EIO on Linux)."""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 65536):
            into.extend(chunk)


def test_a_missing_ledger_file_is_a_usage_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = cli("ledger", "status", str(missing))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not missing.exists()
    assert cli("ledger", "ls", str(tmp_path)).returncode == 2  # a folder


OTHER_SCHEMES = [
    "mysql://u:Secr3tPW99@h/db",
    "POSTGRES://u:Secr3tPW99@h/db",
    "postgresql+psycopg://u:Secr3tPW99@h/db",
    "sqlite://u:Secr3tPW99@h/x.db",
]


@pytest.mark.parametrize("url", OTHER_SCHEMES)
def test_a_url_of_another_scheme_is_refused_by_name_without_its_password(
    url: str, tmp_path: Path
) -> None:
    # It was once made a file path ("mysql:/u:...@h/db"), which the password mask missed.
    inputs = write_inputs(tmp_path / "in.jsonl", [{"i": 1}])
    bulk = ("bulk", "demo", "echo", "--inputs", str(inputs), "--ledger", url,
            "--base-url", "http://127.0.0.1:9")  # fmt: skip
    for args in (("ledger", "status", url), bulk):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        assert "Secr3tPW99" not in result.stdout + result.stderr
        assert ":// is not a ledger URL" in result.stderr and "u:***@h" in result.stderr
    assert list(tmp_path.iterdir()) == [inputs]  # no file was made of it


def test_the_book_of_a_database_without_a_ledger_says_so_and_creates_nothing(
    postgres_url: str,
) -> None:
    offline = ("--api-key", "cpk_test", "--base-url", "http://127.0.0.1:9")  # never reached
    for command in (("status",), ("ls",), ("cancel", *offline)):
        result = cli("ledger", command[0], postgres_url, *command[1:])
        assert result.returncode == 3, result.stderr
        assert "no chutes-jobs ledger in postgresql://" in result.stderr
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass('chutes_jobs_meta')").fetchall() == [(None,)]


def test_an_unreachable_shared_ledger_fails_in_one_line_without_its_password() -> None:
    result = cli("ledger", "status", "postgresql://bob:hunter2@127.0.0.1:1/x?connect_timeout=2")
    assert result.returncode == 3
    assert "hunter2" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "bob:***@127.0.0.1:1" in errors[0], result.stderr


def test_bulk_on_a_shared_ledger_reports_the_batch_totals(
    emu: EmulatorThread, postgres_url: str, tmp_path: Path
) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{"i": i} for i in range(6)])
    args = ["bulk", "demo", "echo", "--inputs", str(inputs), "--ledger", postgres_url, "--json"]
    first, second = (cli(*args, emu=emu) for _ in range(2))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    *results, summary = lines(first)
    assert sorted(r["line"] for r in results) == [1, 2, 3, 4, 5, 6]
    assert {r["outcome"] for r in results} == {"finished"}
    batch = dict.fromkeys(("todo", "creating", "submitted", "unknown", "finished", "failed",
                           "downloaded", "not_submitted", "cancelled"), 0)  # fmt: skip
    assert summary == {
        "summary": {"inputs": 6, "jobs": 6, "created": 6, "resumed": 0, "errors": 0,
                    "outcomes": {"submitted": 0, "finished": 6, "failed": 0, "downloaded": 0,
                                 "not_submitted": 0, "unknown": 0},
                    "batch": {**batch, "finished": 6}},
        "exit_code": 0,
    }  # fmt: skip
    # the batch was finished by the first process: this one has nothing to do, and says so
    (again,) = lines(second)
    assert again["summary"]["inputs"] == again["summary"]["jobs"] == 0
    assert again["summary"]["batch"] == {**batch, "finished": 6} and again["exit_code"] == 0
    text = cli(*args[:-1], emu=emu)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "0 inputs: nothing to do; 0 jobs (0 created, 0 resumed); 0 with errors",
        "batch totals (every process): finished 6",
    ]
