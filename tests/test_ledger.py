"""The bulk-run ledger: transitions, durability, group commit, crash and cancellation safety."""

from __future__ import annotations

import asyncio
import enum
import os
import re
import signal
import sqlite3
import sys
import textwrap
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from chutes_jobs.bulk.ledger import SCHEMA_VERSION, Ledger, LedgerEntry, LedgerError, LedgerState

S = LedgerState
pytestmark = pytest.mark.usefixtures("sqlite_writer")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "run.db"


@pytest.fixture
async def ledger(db_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(db_path) as opened:
        yield opened


async def entry_of(ledger: Ledger, key: str) -> LedgerEntry:
    entry = await ledger.get(key)
    assert entry is not None, f"{key!r} is not in the ledger"
    return entry


async def submitted(ledger: Ledger, key: str, index: int = 0) -> None:
    await ledger.mark_creating(key, index)
    await ledger.mark_submitted(key, f"job-{key}")


# ----------------------------------------------------------------------------- transitions


async def test_success_path_records_every_step(ledger: Ledger) -> None:
    await ledger.mark_creating("a", 7)
    assert (await entry_of(ledger, "a")).state is S.CREATING
    await ledger.mark_submitted("a", "job-1")
    await ledger.mark_finished("a", outcome="complete", failed=False)
    await ledger.mark_downloaded("a", {"out/x.png": "/data/x.png"})

    entry = await ledger.get("a")
    assert entry is not None
    assert (entry.key, entry.input_index, entry.state) == ("a", 7, S.DOWNLOADED)
    assert (entry.job_id, entry.outcome, entry.error) == ("job-1", "complete", None)
    assert dict(entry.paths or {}) == {"out/x.png": "/data/x.png"}
    assert entry.updated_at > 0


async def test_failed_job_keeps_outcome_and_error(ledger: Ledger) -> None:
    await submitted(ledger, "a")
    await ledger.mark_finished("a", outcome="error", failed=True, error="CUDA OOM")
    entry = await ledger.get("a")
    assert entry is not None
    assert (entry.state, entry.outcome, entry.error) == (S.FAILED, "error", "CUDA OOM")


async def test_unknown_create_can_later_learn_its_job_id(ledger: Ledger) -> None:
    await ledger.mark_creating("a", 0)
    await ledger.mark_unknown("a", "connection reset after send")
    assert (await entry_of(ledger, "a")).error == "connection reset after send"
    await ledger.mark_submitted("a", "job-1")
    entry = await ledger.get("a")
    assert entry is not None
    assert (entry.state, entry.job_id, entry.error) == (S.SUBMITTED, "job-1", None)


async def test_not_submitted_key_can_be_created_again(ledger: Ledger) -> None:
    await ledger.mark_creating("a", 0)
    await ledger.mark_not_submitted("a", "429 Daily job quota exceeded")
    assert (await entry_of(ledger, "a")).state is S.NOT_SUBMITTED
    await ledger.mark_creating("a", 3)
    entry = await ledger.get("a")
    assert entry is not None
    assert (entry.state, entry.input_index, entry.error) == (S.CREATING, 3, None)


async def test_repeating_a_write_with_the_same_data_is_accepted(ledger: Ledger) -> None:
    await submitted(ledger, "a")
    await ledger.mark_submitted("a", "job-a")  # e.g. re-issued after its caller was cancelled
    await ledger.mark_finished("a", outcome="complete", failed=False)
    await ledger.mark_finished("a", outcome="complete", failed=False)
    assert (await entry_of(ledger, "a")).state is S.FINISHED


async def test_unknown_key_reads_as_none(ledger: Ledger) -> None:
    assert await ledger.get("nope") is None
    assert await ledger.get_many(["nope"]) == {}


Step = Callable[[Ledger], Awaitable[None]]


async def _absent(ledger: Ledger) -> None:
    return None


async def _creating(ledger: Ledger) -> None:
    await ledger.mark_creating("a", 0)


async def _submitted(ledger: Ledger) -> None:
    await submitted(ledger, "a")


async def _unknown(ledger: Ledger) -> None:
    await ledger.mark_creating("a", 0)
    await ledger.mark_unknown("a", "timeout")


async def _failed(ledger: Ledger, key: str = "a") -> None:
    await submitted(ledger, key)
    await ledger.mark_finished(key, outcome="error", failed=True)


def _create(lg: Ledger) -> Awaitable[None]:
    return lg.mark_creating("a", 0)


ILLEGAL = [
    pytest.param(_creating, _create, id="create twice"),
    pytest.param(_submitted, _create, id="create after submit"),
    pytest.param(_unknown, _create, id="create after unknown"),
    pytest.param(_absent, lambda lg: lg.mark_submitted("a", "job-a"), id="submit unseen key"),
    pytest.param(_submitted, lambda lg: lg.mark_submitted("a", "job-b"), id="submit other job id"),
    pytest.param(
        _creating,
        lambda lg: lg.mark_finished("a", outcome="complete", failed=False),
        id="finish before submit",
    ),
    pytest.param(
        _failed, lambda lg: lg.mark_downloaded("a", {"x": "/x"}), id="download failed job"
    ),
    pytest.param(
        _submitted, lambda lg: lg.mark_not_submitted("a", "late"), id="refused after submit"
    ),
]


@pytest.mark.parametrize(("setup", "illegal"), ILLEGAL)
async def test_illegal_transition_is_refused_and_changes_nothing(
    ledger: Ledger, setup: Step, illegal: Step
) -> None:
    await setup(ledger)
    before = await ledger.get("a")
    with pytest.raises(LedgerError, match="'a'"):
        await illegal(ledger)
    assert await ledger.get("a") == before


async def test_double_create_error_says_why(ledger: Ledger) -> None:
    await submitted(ledger, "a")
    with pytest.raises(LedgerError, match=r"cannot mark creating from submitted.*bill twice"):
        await ledger.mark_creating("a", 0)


async def test_a_refused_write_fails_only_its_own_caller(ledger: Ledger) -> None:
    await submitted(ledger, "taken")
    writes = [ledger.mark_creating(f"k{i}", i) for i in range(50)]
    writes.insert(25, ledger.mark_creating("taken", 99))
    results = await asyncio.gather(*writes, return_exceptions=True)

    assert [type(r) for r in results if r is not None] == [LedgerError]
    assert len(await ledger.entries(S.CREATING)) == 50
    assert (await entry_of(ledger, "taken")).state is S.SUBMITTED


async def test_a_write_refused_after_its_batch_binds_without_a_deprecation_warning(
    ledger: Ledger,
) -> None:
    # A refused write sends its batch one write at a time; those statements once bound
    # numbered placeholders from a tuple, which Python 3.12 warns of (3.14 refuses). Turned
    # into an error in the ledger's thread, that warning hung every caller.
    await submitted(ledger, "taken")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = await asyncio.wait_for(
            asyncio.gather(
                ledger.mark_creating("taken", 1),
                ledger.mark_unknown("fresh", "no such key"),
                ledger.mark_creating("new", 2),
                return_exceptions=True,
            ),
            timeout=60,  # a hang guard, not a timing claim
        )
    assert [type(r).__name__ for r in results] == ["LedgerError", "LedgerError", "NoneType"]
    assert "bill twice" in str(results[0])
    assert (await entry_of(ledger, "new")).state is S.CREATING


async def test_an_unexpected_error_in_the_writer_fails_its_callers_and_service_goes_on(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_writer: str
) -> None:
    """A bug in the writer (not an SQLite error) fails the batch it struck with LedgerError,
    rolled back, and the writer serves the next one."""
    from chutes_jobs.bulk.ledger import sqlite_core

    async with await Ledger.open(db_path) as ledger:
        if sqlite_writer == "thread":
            real_run = sqlite_core.Executor.run
            failures = iter([RuntimeError("injected")])

            def run_once_broken(self: sqlite_core.Executor, ops: Any) -> Any:
                failure = next(failures, None)
                if failure is not None:
                    raise failure
                return real_run(self, ops)

            monkeypatch.setattr(sqlite_core.Executor, "run", run_once_broken)
            calls = [ledger.mark_creating("a", 0), ledger.mark_creating("b", 1)]
        else:  # in the process nothing can be patched: a request it cannot read breaks it
            # begin_create queues at once: all three go to the writer in one hand-over
            calls = [ledger.begin_create("a", 0), ledger.begin_create("b", 1)]
            calls.append(ledger._queue(("w", "creating"), print))  # type: ignore[attr-defined]
        results = await asyncio.wait_for(
            asyncio.gather(*calls, return_exceptions=True),
            timeout=60,  # a hang guard, not a timing claim
        )
        if sqlite_writer == "thread":
            assert [type(r) for r in results] == [LedgerError, LedgerError]
            assert "RuntimeError: injected" in str(results[0])
            assert isinstance(results[0].__cause__, RuntimeError)
        else:
            assert [type(r) for r in results[:2]] == [LedgerError, LedgerError]
            assert "failed unexpectedly (IndexError" in str(results[0])
        assert await ledger.get("a") is None  # rolled back, not half-written

        await ledger.mark_creating("a", 0)
        assert (await entry_of(ledger, "a")).state is S.CREATING


async def test_a_key_sqlite_cannot_store_fails_only_its_own_caller(ledger: Ledger) -> None:
    good, bad, read = await asyncio.gather(
        ledger.mark_creating("good", 0),
        ledger.mark_creating("\ud800", 1),  # a lone surrogate, as json.loads('"\\ud800"') gives
        ledger.get("\udcff"),
        return_exceptions=True,
    )
    assert good is None
    assert isinstance(bad, LedgerError) and "lone surrogates" in str(bad)
    assert isinstance(read, LedgerError)
    assert (await entry_of(ledger, "good")).state is S.CREATING


@pytest.mark.parametrize("index", [2**70, -(2**63) - 1, 1.5, "3", None])
async def test_an_index_sqlite_cannot_hold_fails_only_its_own_caller(
    ledger: Ledger, index: object
) -> None:
    good, bad = await asyncio.gather(
        ledger.mark_creating("good", 0),
        ledger.mark_creating("bad", index),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert good is None
    assert isinstance(bad, LedgerError) and "input_index" in str(bad)
    assert await ledger.get("bad") is None


async def test_text_values_are_stored_as_plain_text_and_errors_even_garbled(
    ledger: Ledger,
) -> None:
    class Status(enum.StrEnum):
        DONE = "done"

    await submitted(ledger, "a")
    await ledger.mark_finished("a", outcome=Status.DONE, failed=False)
    await ledger.mark_creating("b", 1)
    await ledger.mark_unknown("b", "lost: \ud800 in the message")  # recorded, not refused
    await ledger.mark_creating("c", 2)
    with pytest.raises(LedgerError, match="job_id"):
        await ledger.mark_submitted("c", "job-\ud800")  # a job id must be exact
    for job_id in (None, 7, 1.5, b"job"):
        with pytest.raises(LedgerError, match="job_id"):
            await ledger.mark_submitted("c", job_id)  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="outcome"):
        await ledger.mark_finished("a", outcome=float("nan"), failed=False)  # type: ignore[arg-type]
    a, b, c = [await entry_of(ledger, k) for k in "abc"]
    assert (a.outcome, type(a.outcome)) == ("done", str)
    assert b.error == "lost: \ufffd in the message"
    assert c.state is S.CREATING


async def test_a_read_that_fails_never_fails_the_writes_committed_with_it(
    ledger: Ledger,
) -> None:
    """Writes are committed before a batch's reads run: a read failing afterwards (here a
    malformed request, standing for any bug) fails only its own caller."""
    marked = ledger.begin_create("good", 0)  # queued now: the same hand-over as the read
    broken = ledger._queue(("g", None), print)  # type: ignore[attr-defined]
    results = await asyncio.gather(marked, broken, return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], LedgerError)
    assert (await entry_of(ledger, "good")).state is S.CREATING


async def test_a_path_sqlite_cannot_open_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="cannot open ledger"):
        await Ledger.open(str(tmp_path / "bad\0name.db"))


# ----------------------------------------------------------------------------- queries


async def test_entries_and_counts_by_state(ledger: Ledger) -> None:
    await ledger.mark_creating("c", 2)
    await submitted(ledger, "s", 1)
    await _failed(ledger, "f")

    assert [e.key for e in await ledger.entries()] == ["f", "s", "c"]  # by input index, key
    assert [e.key for e in await ledger.entries(S.SUBMITTED)] == ["s"]
    counts = await ledger.counts()
    assert counts == {**dict.fromkeys(S, 0), S.CREATING: 1, S.SUBMITTED: 1, S.FAILED: 1}


async def test_get_many_beyond_sqlite_variable_limit(ledger: Ledger) -> None:
    await asyncio.gather(*(ledger.mark_creating(f"k{i}", i) for i in range(2500)))
    asked = [f"k{i}" for i in range(0, 3000, 1)] + ["k5", "k5"]
    found = await ledger.get_many(asked)
    assert sorted(found) == sorted(f"k{i}" for i in range(2500))
    assert found["k2499"].input_index == 2499


# ----------------------------------------------------------------------------- durability


async def test_entries_survive_reopen(db_path: Path) -> None:
    async with await Ledger.open(db_path) as ledger:
        await submitted(ledger, "a")
        await ledger.mark_creating("b", 1)
    async with await Ledger.open(db_path) as ledger:
        assert (await entry_of(ledger, "a")).job_id == "job-a"
        assert (await entry_of(ledger, "b")).state is S.CREATING
        with pytest.raises(LedgerError):
            await ledger.mark_creating("a", 0)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


KILLED_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from chutes_jobs.bulk.ledger import Ledger

    async def main():
        ledger = await Ledger.open(sys.argv[1])
        await ledger.mark_creating("sent", 0)
        await ledger.mark_submitted("sent", "job-1")
        await ledger.mark_creating("in-flight", 1)
        print("marked", flush=True)
        await asyncio.sleep(3600)  # killed here, never closed

    asyncio.run(main())
    """
)


async def test_row_marked_creating_survives_sigkill(db_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_CHILD, str(db_path), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    assert await asyncio.wait_for(child.stdout.readline(), 30) == b"marked\n"
    child.send_signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL

    async with await Ledger.open(db_path) as ledger:
        found = await ledger.get_many(["sent", "in-flight"])
        assert found["sent"].state is S.SUBMITTED
        assert found["in-flight"].state is S.CREATING
        with pytest.raises(LedgerError):  # the re-run cannot create it a second time
            await ledger.mark_creating("in-flight", 1)


async def test_other_schema_version_is_refused_with_the_path(db_path: Path) -> None:
    async with await Ledger.open(db_path):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    conn.close()
    with pytest.raises(
        LedgerError, match=rf"{re.escape(str(db_path))}.*schema version 99.*{SCHEMA_VERSION}"
    ):
        await Ledger.open(db_path)


#: A ledger file as version 1 wrote it: no states todo and cancelled, an index on state.
V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ledger (
    key TEXT PRIMARY KEY,
    input_index INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'submitted', 'unknown', 'finished',
                                         'failed', 'downloaded', 'not_submitted')),
    job_id TEXT NULL, outcome TEXT NULL, error TEXT NULL, paths TEXT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX ledger_state ON ledger (state);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO ledger VALUES ('a', 0, 'submitted', 'job-a', NULL, NULL, NULL, 1.5);
INSERT INTO ledger VALUES ('b', 1, 'creating', NULL, NULL, NULL, NULL, 2.5);
"""


async def test_a_version_1_file_is_migrated_and_keeps_its_rows(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.executescript(V1_SCHEMA)
    conn.close()
    async with await Ledger.open(db_path) as ledger:
        found = await ledger.get_many(["a", "b"])
        assert (found["a"].state, found["a"].job_id, found["a"].updated_at) == (
            S.SUBMITTED, "job-a", 1.5)  # fmt: skip
        assert found["b"].state is S.CREATING
        await ledger.mark_cancelled("a", "deleted by cancel")  # a state version 2 added
        assert (await ledger.counts())[S.CANCELLED] == 1
    with sqlite3.connect(db_path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger'"
        ).fetchall()
    conn.close()
    assert version == (str(SCHEMA_VERSION),)
    # no index on state is kept (each create would update it twice): only the key's own
    assert [name for (name,) in indexes if not name.startswith("sqlite_autoindex")] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease": 5}, "lease=5: lease applies only to postgresql:// ledgers"),
        ({"max_batch": 0}, "max_batch=0: must be a whole number >= 1"),
        ({"max_batch": True}, "max_batch=True: must be a whole number >= 1"),
        ({"timeout": 3}, "timeout=3: unknown"),
    ],
)
async def test_options_a_sqlite_ledger_does_not_take_are_refused_by_name(
    db_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(LedgerError, match=re.escape(f"ledger option {message}")):
        await Ledger.open(db_path, **options)
    assert db_path.name not in os.listdir(db_path.parent)


@pytest.mark.parametrize(
    "target", ["", "mysql://u:Secr3tPW99@h/db", "sqlite:///x.db", "POSTGRESQL://u:Secr3tPW99@h"]
)
async def test_what_is_neither_a_path_nor_a_postgresql_url_is_refused(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LedgerError, match=r"empty string|is not a ledger URL") as refused:
        await Ledger.open(target)
    assert "Secr3tPW99" not in str(refused.value)
    assert os.listdir(tmp_path) == []


async def test_opening_without_create_refuses_a_missing_file_and_makes_none(
    db_path: Path,
) -> None:
    with pytest.raises(LedgerError, match=r"no chutes-jobs ledger at .*run\.db: no such file"):
        await Ledger.open(db_path, create=False)
    assert os.listdir(db_path.parent) == []
    async with await Ledger.open(db_path) as ledger:
        await ledger.mark_creating("a", 0)
    async with await Ledger.open(db_path, create=False) as ledger:
        assert [e.key for e in await ledger.entries()] == ["a"]


async def test_foreign_files_are_refused(tmp_path: Path) -> None:
    other_db = tmp_path / "app.db"
    with sqlite3.connect(other_db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    with pytest.raises(LedgerError, match="not a chutes-jobs ledger"):
        await Ledger.open(other_db)

    text = tmp_path / "notes.txt"
    text.write_text("x" * 4096)
    with pytest.raises(LedgerError, match=r"notes\.txt"):
        await Ledger.open(text)


async def test_second_open_of_a_ledger_in_use_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="in use"):
        await Ledger.open(ledger.path)


async def test_closed_ledger_refuses_calls(db_path: Path) -> None:
    ledger = await Ledger.open(db_path)
    await ledger.close()
    await ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        await ledger.get("a")


# ----------------------------------------------------------------------------- concurrency


async def test_200_concurrent_writers_are_all_recorded_in_few_commits(ledger: Ledger) -> None:
    async def one(i: int) -> None:
        await submitted(ledger, f"k{i}", i)

    await asyncio.gather(*(one(i) for i in range(200)))

    entries = await ledger.entries(S.SUBMITTED)
    assert [(e.key, e.job_id) for e in entries] == [(f"k{i}", f"job-k{i}") for i in range(200)]
    assert ledger.commit_count < 400  # 400 writes shared their commits


async def test_max_batch_1_commits_every_write(db_path: Path) -> None:
    async with await Ledger.open(db_path, max_batch=1) as ledger:
        await asyncio.gather(*(ledger.mark_creating(f"k{i}", i) for i in range(20)))
        assert ledger.commit_count == 20


@pytest.mark.parametrize(("max_batch", "commits"), [(1024, 1), (100, 3), (7, 43)])
async def test_writes_of_one_loop_iteration_are_handed_over_together(
    db_path: Path, max_batch: int, commits: int
) -> None:
    """300 writes started in one iteration reach the thread as one hand-over: one commit,
    or as many as ``max_batch`` asks for (the rest carried to the next batch)."""
    async with await Ledger.open(db_path, max_batch=max_batch) as ledger:
        await asyncio.gather(*(ledger.mark_creating(f"k{i}", i) for i in range(300)))
        assert ledger.commit_count == commits
        assert (await ledger.counts())[S.CREATING] == 300


async def test_event_loop_keeps_running_during_a_large_batch(ledger: Ledger) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    writes = asyncio.gather(*(ledger.mark_creating(f"k{i}", i) for i in range(3000)))
    await asyncio.sleep(0)  # every write is now queued
    queued_at = ticks
    await writes
    during_writes = ticks - queued_at

    before_read = ticks
    found = await ledger.get_many([f"k{i}" for i in range(3000)])  # one large read
    during_read = ticks - before_read
    ticking.cancel()

    assert len(found) == 3000
    assert during_writes > 0
    assert during_read > 0


# ----------------------------------------------------------------------------- cancellation


async def test_cancelled_caller_still_gets_its_write_committed(ledger: Ledger) -> None:
    task = asyncio.create_task(ledger.mark_creating("a", 0))
    await asyncio.sleep(0)  # the write is queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await entry_of(ledger, "a")).state is S.CREATING


async def test_close_drains_pending_writes(db_path: Path) -> None:
    ledger = await Ledger.open(db_path)
    tasks = [asyncio.create_task(ledger.mark_creating(f"k{i}", i)) for i in range(500)]
    await asyncio.sleep(0)  # all queued, none answered yet
    await ledger.close()
    await asyncio.gather(*tasks)

    async with await Ledger.open(db_path) as reopened:
        assert (await reopened.counts())[S.CREATING] == 500
