"""The ledger interface: what a ledger records per input key, and the legal transitions.

Creates are billed and not idempotent, and the API has no idempotency key and no list endpoint
(``docs/PROTOCOL.md``, "Creating a job"). So a bulk run records, per input key, what it did
*before* and *after* each create, and a re-run after a crash reads the ledger instead of
creating the job again. A backend (:mod:`.sqlite`; a PostgreSQL one would be one more module)
implements :class:`LedgerStore` and checks every write with :func:`check_transition`.

States and their legal transitions (anything else raises :class:`LedgerError`)::

    (absent), not_submitted -> creating -> submitted -> finished -> downloaded
                                        |            -> failed
                                        -> unknown -> submitted
                                        -> not_submitted

``mark_creating`` on a key in any state but absent or ``not_submitted`` is refused: that is the
double-create guard. A row left ``creating`` means the process died between the mark and the
answer, so the create may have reached the server: on re-run the bulk layer treats ``creating``
rows as ``unknown`` (never re-creates them). Re-marking a row with the state and data it already
has is accepted (so a write whose caller was cancelled can safely be re-issued); re-marking it
with different data is refused.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

import attrs

from ...errors import LedgerError

__all__ = ["LedgerEntry", "LedgerError", "LedgerState", "LedgerStore", "check_transition"]


class LedgerState(enum.StrEnum):
    """What the ledger knows about one input key."""

    CREATING = "creating"  #: written before the create request is sent
    SUBMITTED = "submitted"  #: the job id is known
    UNKNOWN = "unknown"  #: the create may have reached the server, but no answer came
    FINISHED = "finished"  #: the job finished; its outcome is recorded
    FAILED = "failed"  #: the job finished as a failure
    DOWNLOADED = "downloaded"  #: the outputs are on disk; their paths are recorded
    NOT_SUBMITTED = "not_submitted"  #: the create was refused before acting; may be retried


def _freeze_paths(paths: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if paths is None else MappingProxyType(dict(paths))


@attrs.frozen
class LedgerEntry:
    """One row of the ledger: the latest known state of one input key."""

    key: str
    input_index: int
    state: LedgerState
    job_id: str | None
    outcome: str | None
    error: str | None
    paths: Mapping[str, str] | None = attrs.field(converter=_freeze_paths, hash=False)
    updated_at: float


_S = LedgerState
#: For each target state, the states a row may be in before it (None: no row yet).
_ALLOWED_FROM: dict[LedgerState, frozenset[LedgerState | None]] = {
    _S.CREATING: frozenset({None, _S.NOT_SUBMITTED}),
    _S.SUBMITTED: frozenset({_S.CREATING, _S.UNKNOWN, _S.SUBMITTED}),
    _S.UNKNOWN: frozenset({_S.CREATING, _S.UNKNOWN}),
    _S.NOT_SUBMITTED: frozenset({_S.CREATING, _S.NOT_SUBMITTED}),
    _S.FINISHED: frozenset({_S.SUBMITTED, _S.FINISHED}),
    _S.FAILED: frozenset({_S.SUBMITTED, _S.FAILED}),
    _S.DOWNLOADED: frozenset({_S.FINISHED, _S.DOWNLOADED}),
}
#: Columns that must match when a row is re-marked with the state it already has.
_MUST_MATCH: dict[LedgerState, tuple[str, ...]] = {
    _S.SUBMITTED: ("job_id",),
    _S.FINISHED: ("outcome",),
    _S.FAILED: ("outcome",),
}


def check_transition(
    current: LedgerEntry | None, key: str, target: LedgerState, values: Mapping[str, Any]
) -> None:
    """Raise :class:`LedgerError` unless ``current`` may become ``target`` with ``values``."""
    before = None if current is None else current.state
    if before not in _ALLOWED_FROM[target]:
        shown = "absent" if before is None else before.value
        hint = ""
        if target is _S.CREATING:
            hint = " (a create may already have been sent for it; creating again could bill twice)"
        raise LedgerError(f"ledger key {key!r}: cannot mark {target.value} from {shown}{hint}")
    if current is not None and before is target:
        for column in _MUST_MATCH.get(target, ()):
            if getattr(current, column) != values[column]:
                raise LedgerError(
                    f"ledger key {key!r} is already {target.value} with {column}="
                    f"{getattr(current, column)!r}, refusing {column}={values[column]!r}"
                )


class LedgerStore(Protocol):
    """What ``submit_many`` needs of a ledger backend (every ``mark_*`` durable on return)."""

    async def get(self, key: str) -> LedgerEntry | None: ...
    async def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]: ...
    async def entries(self, state: LedgerState | None = None) -> list[LedgerEntry]: ...
    async def counts(self) -> dict[LedgerState, int]: ...
    async def mark_creating(self, key: str, index: int) -> None: ...
    async def mark_submitted(self, key: str, job_id: str) -> None: ...
    async def mark_unknown(self, key: str, error: str) -> None: ...
    async def mark_not_submitted(self, key: str, error: str) -> None: ...
    async def mark_finished(
        self, key: str, *, outcome: str, failed: bool, error: str | None = None
    ) -> None: ...
    async def mark_downloaded(self, key: str, paths: Mapping[str, str]) -> None: ...
    async def close(self) -> None: ...
