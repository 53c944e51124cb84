"""The SQLite ledger's writes, as the ledger's caller sees them: the guarded statements, the
op a write is sent as, and what its answer means.

A write is an ``UPDATE`` (an ``INSERT ... ON CONFLICT`` for ``creating``) whose ``WHERE`` holds
its legal transition, built from :func:`.base.allowed_from` and :func:`.base.must_match`, so no
read precedes it. :data:`STATEMENTS` gives, per target state, the one-row statement and the
parts of the multi-row one (``UPDATE ... FROM (VALUES ...)``), which :mod:`.sqlite_core` runs
once over all the batch's writes to that state (it takes its SQL from here: it imports nothing
of the package). A write it refused comes back with the row as it is, and
:func:`write_outcome` turns that into :func:`.base.refusal`'s error (what the row
holds and why the move is illegal).
"""

from __future__ import annotations

import re
import time
from typing import Any

import attrs

from ...errors import LedgerError
from .base import (
    LedgerEntry,
    LedgerState,
    allowed_from,
    columns_set,
    entry_of,
    must_match,
    refusal,
)
from .sqlite_core import FAILED, OK, Answer, Statements

__all__ = ["STATEMENTS", "Write", "plain_key", "write_for", "write_outcome"]

_S = LedgerState


@attrs.define(eq=False)
class Write:
    """One write: ``key`` becomes ``target`` with ``values``; ``op`` is what is sent
    (``("w", target, key, row)``, the row: key, updated_at, the columns set, the columns that
    must match; for ``creating``: key, input_index, updated_at). Not changed once made (a
    plain attrs class: made twice per create, where a frozen one costs more).

    With ``or_entry``, a refused write is no error: its caller gets the row as it is.
    """

    key: str
    target: LedgerState
    values: dict[str, Any]
    op: tuple[str, str, str, tuple[Any, ...]]
    or_entry: bool = False


#: Per target state (but ``creating``), the values a write's row holds after its updated_at:
#: the columns it sets, then those that must match.
_ROW_VALUES: dict[LedgerState, tuple[str, ...]] = {
    target: columns_set(target) + must_match(target)
    for target in LedgerState
    if target not in (_S.CREATING, _S.TODO)
}


def write_for(key: str, target: LedgerState, *, or_entry: bool = False, **values: Any) -> Write:
    """The write moving ``key`` to ``target`` with ``values``; :class:`LedgerError` for a
    value the ledger cannot hold (see :func:`plain_key` and :func:`_plain`)."""
    key = plain_key(key)
    if target is _S.CREATING:
        row: tuple[Any, ...] = (key, _index(values["input_index"], key), time.time())
    else:
        row = (key, time.time(), *[_plain(values[n], key, n) for n in _ROW_VALUES[target]])
    return Write(key, target, values, ("w", target.value, key, row), or_entry)


#: What an SQLite INTEGER holds.
_INT64 = range(-(2**63), 2**63)
_SURROGATE = re.compile("[\ud800-\udfff]")


def plain_key(key: object) -> str:
    """``key`` as exactly str (a str subclass as its text); :class:`LedgerError` for anything
    else, or text SQLite cannot store (a lone surrogate, as ``json.loads('"\\ud800"')`` makes)."""
    if not isinstance(key, str):
        raise LedgerError(f"ledger key {key!r} ({type(key).__name__}): a key is text")
    text = _exact(key)
    if not text.isascii() and not _encodable(text):
        raise LedgerError(f"ledger key {text!r}: a key is text without lone surrogates")
    return text


def _plain(value: Any, key: str, name: str) -> str | None:
    """A column's value as exactly str (a str subclass, e.g. an enum member, as its text);
    None only for ``error``. In an ``error`` text lone surrogates become U+FFFD (the error
    is recorded even if garbled); anything else is a :class:`LedgerError`."""
    if isinstance(value, str):
        text = _exact(value)
        if text.isascii() or _encodable(text):
            return text
        if name == "error":
            return _SURROGATE.sub("\ufffd", text)
    elif value is None and name == "error":
        return None
    raise LedgerError(
        f"ledger key {key!r}: {name} {value!r} ({type(value).__name__}) cannot be recorded: "
        "give text without lone surrogates"
    )


def _index(index: Any, key: str) -> int:
    """An input index: an int of 64 bits (an int subclass as its plain value)."""
    if isinstance(index, int) and not isinstance(index, bool) and index in _INT64:
        return int(index)
    raise LedgerError(
        f"ledger key {key!r}: input_index {index!r} ({type(index).__name__}) cannot be "
        "recorded: give an integer of 64 bits"
    )


def _exact(text: str) -> str:
    """``text`` as exactly str: a subclass (an enum member) as its characters."""
    return text if type(text) is str else str.__str__(text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def write_outcome(write: Write, answer: Answer) -> tuple[LedgerEntry | None, LedgerError | None]:
    """What the caller of ``write`` gets for ``answer``: (result, error); the result is the
    row of a refused ``or_entry`` write, else None."""
    code, payload = answer
    if code == OK:
        return None, None
    where = f"ledger key {write.key!r}: cannot mark {write.target.value}"
    if code == FAILED:
        return None, LedgerError(f"{where}: {payload}")
    current = None if payload is None else entry_of(payload)
    refused = refusal(current, write.key, write.target, write.values, or_entry=write.or_entry)
    return refused or (None, LedgerError(where))


def _listed(target: LedgerState) -> str:
    """The states ``target`` may come from whatever the row holds, as an SQL list."""
    same_ok = not must_match(target)
    states = [s for s in allowed_from(target) if s is not None and (s is not target or same_ok)]
    return ", ".join(sorted(f"'{s.value}'" for s in states))


def _creating() -> tuple[str, str, str, str, tuple[int, ...]]:
    head = "INSERT INTO ledger (key, input_index, state, updated_at) VALUES "
    group = "(?, ?, 'creating', ?)"
    tail = (
        " ON CONFLICT (key) DO UPDATE SET input_index = excluded.input_index, "
        "state = excluded.state, updated_at = excluded.updated_at, job_id = NULL, "
        f"outcome = NULL, error = NULL, paths = NULL WHERE ledger.state IN ({_listed(_S.CREATING)})"
    )
    return head + group + tail, head, group, tail, (0, 1, 2)


def _update(target: LedgerState) -> tuple[str, str, str, str, tuple[int, ...]]:
    """The guarded statements writing into ``target``: a row changes only when its move is
    legal. One row: a plain UPDATE with qmark parameters (numbered ones bound from a sequence
    warn on 3.12 and fail on 3.14); more: UPDATE ... FROM a VALUES table whose columns are
    column1, column2, ... in the row's order."""
    sets, matched = columns_set(target), must_match(target)
    width = 2 + len(sets) + len(matched)

    def parts(column: Any) -> tuple[str, str]:
        assignments = "".join(f", {name} = {column(3 + i)}" for i, name in enumerate(sets))
        guard = f"ledger.state IN ({_listed(target)})"
        if target in allowed_from(target) and matched:
            first = 3 + len(sets)
            same = " AND ".join(f"ledger.{n} IS {column(first + i)}" for i, n in enumerate(matched))
            guard = f"{guard} OR (ledger.state = '{target.value}' AND {same})"
        set_clause = f"UPDATE ledger SET state = '{target.value}', updated_at = {column(2)}"
        return set_clause + assignments, guard

    update, guard = parts(lambda _: "?")
    one = f"{update} WHERE ledger.key = ? AND ({guard})"
    update, guard = parts("v.column{}".format)
    head = f"{update} FROM (VALUES "
    group = "(" + ", ".join("?" * width) + ")"
    tail = f") AS v WHERE ledger.key = v.column1 AND ({guard})"
    # the one-row statement's placeholders: updated_at and the columns set, key, the matched
    matched_from = 2 + len(sets)
    order = (*range(1, matched_from), 0, *range(matched_from, width))
    return one, head, group, tail, order


#: Per target state's value, the statements :class:`.sqlite_core.Executor` runs.
STATEMENTS: Statements = {
    target.value: _creating() if target is _S.CREATING else _update(target)
    for target in LedgerState
    if target is not _S.TODO
}
