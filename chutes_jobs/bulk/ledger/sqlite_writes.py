"""The SQLite ledger's writes: guarded statements, one per kind of write in a batch.

A write is an ``UPDATE`` (an ``INSERT ... ON CONFLICT`` for ``creating``) whose ``WHERE`` holds
its legal transition, built from :func:`.base.allowed_from` and :func:`.base.must_match`, so no
read precedes it. The writes of a batch that move to the same state run as ONE statement over
all their rows (``UPDATE ... FROM (VALUES ...)``): the thread releases and takes back the GIL
once per statement, not once per row, which is what a busy event loop pays for. When the
statements change fewer rows than they were given writes, some write was refused: the batch's
transaction is rolled back and begun again, and its writes are applied one by one, a refused
one getting :func:`.base.check_transition`'s error (what the row holds and why it is illegal).
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from itertools import chain
from typing import Any

import attrs

from ...errors import LedgerError
from .base import LedgerEntry, LedgerState, allowed_from, columns_set, must_match

__all__ = ["Answer", "Write", "apply_writes", "write_for"]

_S = LedgerState
_Connection = sqlite3.Connection
#: Rows per statement (at most 6 parameters each, far below SQLite's 32,766).
_ROWS_PER_STATEMENT = 500
#: ``UPDATE ... FROM`` needs SQLite 3.33; older libraries run a statement per row.
_MULTI_ROW = sqlite3.sqlite_version_info >= (3, 33, 0)


@attrs.define(eq=False)
class Write:
    """One write: ``key`` becomes ``target`` with ``values``; ``row`` holds its parameters
    (key, updated_at, the columns set, the columns that must match). Not changed once made
    (a plain attrs class: made twice per create, where a frozen one costs more).

    With ``or_entry``, a refused write is no error: its caller gets the row as it is.
    """

    key: str
    target: LedgerState
    values: dict[str, Any]
    row: tuple[Any, ...]
    or_entry: bool = False


#: Per target state (but ``creating``), the values a write's row holds after its updated_at:
#: the columns it sets, then those that must match.
_ROW_VALUES: dict[LedgerState, tuple[str, ...]] = {
    target: columns_set(target) + must_match(target)
    for target in LedgerState
    if target not in (_S.CREATING, _S.TODO)
}


def write_for(key: str, target: LedgerState, *, or_entry: bool = False, **values: Any) -> Write:
    """The write moving ``key`` to ``target`` with ``values``."""
    if target is _S.CREATING:
        row: tuple[Any, ...] = (key, values["input_index"], time.time())
    else:
        row = (key, time.time(), *[values[name] for name in _ROW_VALUES[target]])
    return Write(key, target, values, row, or_entry)


def _listed(target: LedgerState) -> str:
    """The states ``target`` may come from whatever the row holds, as an SQL list."""
    same_ok = not must_match(target)
    states = [s for s in allowed_from(target) if s is not None and (s is not target or same_ok)]
    return ", ".join(sorted(f"'{s.value}'" for s in states))


@functools.lru_cache(maxsize=64)
def _statement(target: LedgerState, rows: int) -> str:
    """The guarded statement writing ``rows`` rows into ``target``: a row changes only when
    its move is legal."""
    if target is _S.CREATING:
        values = ", ".join(["(?, ?, 'creating', ?)"] * rows)
        return (
            f"INSERT INTO ledger (key, input_index, state, updated_at) VALUES {values} "
            "ON CONFLICT (key) DO UPDATE SET input_index = excluded.input_index, "
            "state = excluded.state, updated_at = excluded.updated_at, job_id = NULL, "
            f"outcome = NULL, error = NULL, paths = NULL WHERE ledger.state IN ({_listed(target)})"
        )
    # One row: plain UPDATE with qmark parameters in the order of _alone_row (any SQLite;
    # numbered ones bound from a sequence warn on 3.12 and fail on 3.14); more: UPDATE ...
    # FROM a VALUES table whose columns are column1, column2, ... in the row's order.
    sets, matched = columns_set(target), must_match(target)
    width = 2 + len(sets) + len(matched)
    column: Callable[[int], str] = (lambda _: "?") if rows == 1 else "v.column{}".format
    assignments = "".join(f", {name} = {column(3 + i)}" for i, name in enumerate(sets))
    guard = f"ledger.state IN ({_listed(target)})"
    if target in allowed_from(target) and matched:
        first = 3 + len(sets)
        same = " AND ".join(f"ledger.{n} IS {column(first + i)}" for i, n in enumerate(matched))
        guard = f"{guard} OR (ledger.state = '{target.value}' AND {same})"
    update = f"UPDATE ledger SET state = '{target.value}', updated_at = {column(2)}{assignments}"
    if rows == 1:
        return f"{update} WHERE ledger.key = ? AND ({guard})"
    values = ", ".join(["(" + ", ".join("?" * width) + ")"] * rows)
    return f"{update} FROM (VALUES {values}) AS v WHERE ledger.key = v.column1 AND ({guard})"


def _alone_row(write: Write) -> tuple[Any, ...]:
    """``write.row`` in the order of its one-row statement's placeholders: updated_at and
    the columns set, the key, then the columns that must match."""
    if write.target is _S.CREATING:
        return write.row
    matched_from = 2 + len(columns_set(write.target))
    row = write.row
    return (*row[1:matched_from], row[0], *row[matched_from:])


Check = Callable[[LedgerEntry | None, str, LedgerState, dict[str, Any]], None]
Answer = tuple[LedgerEntry | None, BaseException | None]


def apply_writes(
    conn: _Connection,
    writes: list[Write],
    select_one: Callable[[str], LedgerEntry | None],
    check: Check,
) -> list[Answer]:
    """Apply ``writes`` inside the open transaction: one (result, error) per write, in order
    (the result is the row of a refused ``or_entry`` write, else None)."""
    if _apply_together(conn, writes):
        return [(None, None)] * len(writes)
    # Some write was refused: undo the batch and start its transaction over (no savepoint
    # on the common path: each statement SQLite runs costs the thread the GIL twice).
    conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    return [_apply_alone(conn, write, select_one, check) for write in writes]


def _apply_together(conn: _Connection, writes: list[Write]) -> bool:
    """One statement per target state (their order does not matter: every key is distinct);
    True when every write changed its row. Keys seen twice go one by one (False)."""
    if not _MULTI_ROW or len({w.key for w in writes}) < len(writes):
        return False
    by_target: dict[LedgerState, list[Write]] = {}
    for write in writes:
        by_target.setdefault(write.target, []).append(write)
    before = conn.total_changes
    try:
        for target, group in by_target.items():
            for start in range(0, len(group), _ROWS_PER_STATEMENT):
                chunk = group[start : start + _ROWS_PER_STATEMENT]
                params = list(chain.from_iterable([w.row for w in chunk]))
                conn.execute(_statement(target, len(chunk)), params)
    except sqlite3.Error:
        return False
    return conn.total_changes - before == len(writes)


def _apply_alone(
    conn: _Connection,
    write: Write,
    select_one: Callable[[str], LedgerEntry | None],
    check: Check,
) -> Answer:
    """Apply one write: what its caller gets (the row of a refused ``or_entry`` write, or the
    error of a refused or failed one)."""
    before = conn.total_changes
    try:
        conn.execute(_statement(write.target, 1), _alone_row(write))
    except sqlite3.Error as exc:
        error = f"ledger key {write.key!r}: cannot mark {write.target.value}: {exc}"
        return None, LedgerError(error)
    if conn.total_changes - before == 1:
        return None, None
    current = select_one(write.key)
    if write.or_entry and current is not None:
        return current, None
    try:
        check(current, write.key, write.target, write.values)
    except LedgerError as exc:
        return None, exc
    return None, LedgerError(f"ledger key {write.key!r}: cannot mark {write.target.value}")
