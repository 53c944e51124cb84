"""What every ledger backend promises, run on both: SQLite (a file) and PostgreSQL (a real
server, ``postgres_url``; skipped with the reason when no server can be started)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_support import use_sqlite_writer

from chutes_jobs.bulk.ledger import (
    Ledger,
    LedgerEntry,
    LedgerError,
    LedgerState,
    check_transition,
)

S = LedgerState


@pytest.fixture(params=["sqlite", "sqlite-thread", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param.startswith("sqlite"):
        use_sqlite_writer(monkeypatch, "thread" if request.param == "sqlite-thread" else "process")
        return str(tmp_path / "run.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def ledger(target: str) -> AsyncIterator[Ledger]:
    async with await Ledger.open(target) as opened:
        yield opened


async def entry_of(ledger: Ledger, key: str) -> LedgerEntry:
    entry = await ledger.get(key)
    assert entry is not None, f"{key!r} is not in the ledger"
    return entry


async def submitted(ledger: Ledger, key: str, index: int = 0) -> None:
    await ledger.mark_creating(key, index)
    await ledger.mark_submitted(key, f"job-{key}")


async def test_every_step_is_recorded(ledger: Ledger) -> None:
    await ledger.mark_creating("a", 7)
    assert (await entry_of(ledger, "a")).state is S.CREATING
    await ledger.mark_submitted("a", "job-1")
    await ledger.mark_finished("a", outcome="complete", failed=False)
    await ledger.mark_downloaded("a", {"out/x.png": "/data/x.png"})

    entry = await entry_of(ledger, "a")
    assert (entry.key, entry.input_index, entry.state) == ("a", 7, S.DOWNLOADED)
    assert (entry.job_id, entry.outcome, entry.error) == ("job-1", "complete", None)
    assert dict(entry.paths or {}) == {"out/x.png": "/data/x.png"}
    assert entry.updated_at > 0


async def test_unknown_learns_its_job_and_refused_is_created_again(ledger: Ledger) -> None:
    await ledger.mark_creating("u", 0)
    await ledger.mark_unknown("u", "connection reset after send")
    await ledger.mark_submitted("u", "job-u")
    await ledger.mark_creating("r", 1)
    await ledger.mark_not_submitted("r", "429 quota")
    await ledger.mark_creating("r", 3)

    found = await ledger.get_many(["u", "r", "nope"])
    assert (found["u"].state, found["u"].job_id, found["u"].error) == (S.SUBMITTED, "job-u", None)
    assert (found["r"].state, found["r"].input_index, found["r"].error) == (S.CREATING, 3, None)
    assert "nope" not in found


Step = Callable[[Ledger], Awaitable[None]]


async def _nothing(ledger: Ledger) -> None:
    return None


async def _creating(ledger: Ledger) -> None:
    await ledger.mark_creating("a", 0)


async def _submitted(ledger: Ledger) -> None:
    await submitted(ledger, "a")


async def _failed(ledger: Ledger) -> None:
    await submitted(ledger, "a")
    await ledger.mark_finished("a", outcome="error", failed=True)


async def _cancelled(ledger: Ledger) -> None:
    await submitted(ledger, "a")
    await ledger.mark_cancelled("a", "deleted")


ILLEGAL = [
    pytest.param(_creating, lambda lg: lg.mark_creating("a", 0), id="create twice"),
    pytest.param(_submitted, lambda lg: lg.mark_creating("a", 0), id="create after submit"),
    pytest.param(_nothing, lambda lg: lg.mark_submitted("a", "job-a"), id="submit unseen"),
    pytest.param(_submitted, lambda lg: lg.mark_submitted("a", "job-b"), id="other job id"),
    pytest.param(
        _creating, lambda lg: lg.mark_finished("a", outcome="ok", failed=False), id="early finish"
    ),
    pytest.param(_failed, lambda lg: lg.mark_downloaded("a", {"x": "/x"}), id="download failed"),
    pytest.param(_creating, lambda lg: lg.mark_cancelled("a", "x"), id="cancel a create"),
    pytest.param(_failed, lambda lg: lg.mark_cancelled("a", "x"), id="cancel finished"),
    pytest.param(_cancelled, lambda lg: lg.mark_creating("a", 0), id="create cancelled"),
    pytest.param(
        _cancelled, lambda lg: lg.mark_finished("a", outcome="ok", failed=False), id="finish"
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


async def test_repeating_a_write_with_the_same_data_is_accepted(ledger: Ledger) -> None:
    await submitted(ledger, "a")
    await ledger.mark_submitted("a", "job-a")
    await ledger.mark_finished("a", outcome="complete", failed=False)
    await ledger.mark_finished("a", outcome="complete", failed=False)
    assert (await entry_of(ledger, "a")).state is S.FINISHED


async def test_a_refused_write_among_many_fails_only_its_caller(ledger: Ledger) -> None:
    await submitted(ledger, "taken")
    writes = [ledger.mark_creating(f"k{i}", i) for i in range(60)]
    writes.insert(30, ledger.mark_creating("taken", 99))
    writes.insert(10, ledger.mark_submitted("k0", "job-k0"))  # same batch, after its creating
    results = await asyncio.gather(*writes, return_exceptions=True)

    errors = [r for r in results if r is not None]
    assert [type(e) for e in errors] == [LedgerError]
    assert "'taken'" in str(errors[0])
    counts = await ledger.counts()
    assert (counts[S.CREATING], counts[S.SUBMITTED]) == (59, 2)
    assert (await entry_of(ledger, "taken")).job_id == "job-taken"


async def test_begin_create_marks_a_new_key_or_answers_the_known_one(ledger: Ledger) -> None:
    await submitted(ledger, "old", 0)
    assert await ledger.begin_create("new", 1) is None
    known = await ledger.begin_create("old", 0)
    assert known is not None and (known.state, known.job_id) == (S.SUBMITTED, "job-old")
    assert (await entry_of(ledger, "new")).state is S.CREATING
    assert (await entry_of(ledger, "old")).state is S.SUBMITTED


async def test_cancelled_jobs_and_inputs_are_recorded(ledger: Ledger) -> None:
    await submitted(ledger, "job", 0)
    await ledger.mark_creating("refused", 1)
    await ledger.mark_not_submitted("refused", "quota")
    await ledger.mark_cancelled("job", "deleted by cancel")
    await ledger.mark_cancelled("refused", "cancelled before it was created")
    await ledger.mark_cancelled("job", "deleted by cancel")  # again: accepted

    cancelled = await ledger.entries(S.CANCELLED)
    assert [(e.key, e.job_id, e.error) for e in cancelled] == [
        ("job", "job-job", "deleted by cancel"),
        ("refused", None, "cancelled before it was created"),
    ]


async def test_entries_counts_and_summary(ledger: Ledger) -> None:
    await ledger.mark_creating("c", 2)
    await submitted(ledger, "s", 1)
    await _failed_as(ledger, "f")

    assert [e.key for e in await ledger.entries()] == ["f", "s", "c"]  # input index, then key
    assert [e.key for e in await ledger.entries(S.SUBMITTED)] == ["s"]
    expected = {**dict.fromkeys(S, 0), S.CREATING: 1, S.SUBMITTED: 1, S.FAILED: 1}
    assert await ledger.counts() == expected
    summary = await ledger.summary()
    assert (summary.counts, summary.total) == (expected, 3)
    assert summary.location == ledger.location


async def _failed_as(ledger: Ledger, key: str) -> None:
    await submitted(ledger, key)
    await ledger.mark_finished(key, outcome="error", failed=True, error="CUDA OOM")


async def test_a_cancelled_caller_still_gets_its_write_and_close_drains(target: str) -> None:
    ledger = await Ledger.open(target)
    task = asyncio.create_task(ledger.mark_creating("a", 0))
    await asyncio.sleep(0)  # queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pending = [asyncio.create_task(ledger.mark_creating(f"k{i}", i)) for i in range(300)]
    await asyncio.sleep(0)
    await ledger.close()
    await asyncio.gather(*pending)
    await ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        await ledger.get("a")

    async with await Ledger.open(target) as reopened:
        assert (await entry_of(reopened, "a")).state is S.CREATING
        assert (await reopened.counts())[S.CREATING] == 301


# ----------------------------------------------------------------------------- fuzz

_OPS = st.sampled_from(["creating", "begin", "submitted", "unknown", "not_submitted",
                        "finished", "downloaded", "cancelled"])  # fmt: skip
_STEP = st.tuples(_OPS, st.sampled_from("abc"), st.sampled_from(["j1", "j2"]), st.booleans())


def _model_step(rows: dict[str, dict[str, Any]], op: str, key: str, job: str, flag: bool) -> Any:
    """What a ledger must do: ``check_transition`` on the row as it is; the row after."""
    row = rows.get(key)
    current = None if row is None else LedgerEntry(key=key, paths=None, updated_at=0.0, **row)
    if op == "begin":
        if current is not None and current.state not in (S.TODO, S.NOT_SUBMITTED):
            return current
        op = "creating"
    target, values = _TARGETS[op](job, flag)
    check_transition(current, key, target, values)  # raises: the backends must refuse it too
    new = dict(row or {}, state=target)
    if target is S.CREATING:
        new.update(job_id=None, outcome=None, error=None, input_index=values["input_index"])
    else:
        new.update({k: v for k, v in values.items() if k != "paths"})
    rows[key] = new
    return None


_TARGETS: dict[str, Callable[[str, bool], tuple[LedgerState, dict[str, Any]]]] = {
    "creating": lambda job, flag: (S.CREATING, {"input_index": 1 + flag}),
    "submitted": lambda job, flag: (S.SUBMITTED, {"job_id": job, "error": None}),
    "unknown": lambda job, flag: (S.UNKNOWN, {"error": "lost"}),
    "not_submitted": lambda job, flag: (S.NOT_SUBMITTED, {"error": "refused"}),
    "finished": lambda job, flag: (
        S.FAILED if flag else S.FINISHED,
        {"outcome": job, "error": None},
    ),
    "downloaded": lambda job, flag: (S.DOWNLOADED, {"paths": "{}"}),
    "cancelled": lambda job, flag: (S.CANCELLED, {"error": "cancelled"}),
}


async def _backend_step(ledger: Ledger, op: str, key: str, job: str, flag: bool) -> Any:
    """One write, queued when its task starts (so a batch's writes queue in list order)."""
    return await _write(ledger, op, key, job, flag)


def _write(ledger: Ledger, op: str, key: str, job: str, flag: bool) -> Awaitable[Any]:
    target, values = _TARGETS["creating" if op == "begin" else op](job, flag)
    if op == "begin":
        return ledger.begin_create(key, values["input_index"])
    if target is S.CREATING:
        return ledger.mark_creating(key, values["input_index"])
    if op == "finished":
        return ledger.mark_finished(key, outcome=job, failed=flag)
    if op == "downloaded":
        return ledger.mark_downloaded(key, {})
    mark = {S.SUBMITTED: lambda: ledger.mark_submitted(key, job),
            S.UNKNOWN: lambda: ledger.mark_unknown(key, "lost"),
            S.NOT_SUBMITTED: lambda: ledger.mark_not_submitted(key, "refused"),
            S.CANCELLED: lambda: ledger.mark_cancelled(key, "cancelled")}  # fmt: skip
    return mark[target]()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(batches=st.lists(st.lists(_STEP, min_size=1, max_size=6), min_size=1, max_size=6))
def test_backends_accept_and_refuse_exactly_what_check_transition_says(
    target: str, batches: list[list[tuple[str, str, str, bool]]]
) -> None:
    """Random marks, sent in concurrent batches (one commit each): every write is accepted or
    refused as the transition rule says, in the order sent, and the rows end as the rule
    computes them."""
    prefix = uuid.uuid4().hex[:8]  # the examples share the test's ledger

    async def run() -> None:
        model: dict[str, dict[str, Any]] = {}
        async with await Ledger.open(target) as ledger:
            for batch in batches:
                expected = []
                for op, key, job, flag in batch:
                    try:
                        expected.append(_model_step(model, op, prefix + key, job, flag))
                    except LedgerError:
                        expected.append(LedgerError)
                calls = [_backend_step(ledger, op, prefix + k, j, f) for op, k, j, f in batch]
                got = await asyncio.gather(*calls, return_exceptions=True)
                assert list(map(_answer, got)) == list(map(_answer, expected)), batch
            found = await ledger.get_many([prefix + k for k in "abc"])
            assert {k: _row(e) for k, e in found.items()} == {
                k: (r["state"], r["job_id"], r["outcome"], r["error"], r["input_index"])
                for k, r in model.items()
            }

    asyncio.run(run())


def _row(entry: LedgerEntry) -> tuple[Any, ...]:
    return entry.state, entry.job_id, entry.outcome, entry.error, entry.input_index


def _answer(value: Any) -> Any:
    """A write's answer, comparable: refused, nothing, or the row (timestamps aside)."""
    if value is LedgerError or isinstance(value, LedgerError):
        return "refused"
    if isinstance(value, BaseException):
        raise value
    return None if value is None else _row(value)
