"""The ledger interface: what a ledger records per input key, and the legal transitions.

Creates are billed and not idempotent, and the API has no idempotency key and no list endpoint
(``docs/PROTOCOL.md``, "Creating a job"). So a bulk run records, per input key, what it did
*before* and *after* each create, and a re-run after a crash reads the ledger instead of
creating the job again. The backends (:mod:`.sqlite`, :mod:`.postgres`) implement
:class:`Ledger` and check every write with :func:`check_transition`.

States and their legal transitions (anything else raises :class:`LedgerError`)::

    (absent), todo, not_submitted -> creating -> submitted -> finished -> downloaded
                                             |            -> failed
                                             -> unknown -> submitted
                                             -> not_submitted
    todo, not_submitted, submitted -> cancelled

``todo`` is an input loaded into a shared (PostgreSQL) ledger and not yet created.
``mark_creating`` on a key in any state but absent, ``todo`` or ``not_submitted`` is refused:
that is the double-create guard. A row left ``creating`` means its process died between the
mark and the answer, so the create may have reached the server: a re-run treats it as
``unknown`` (never re-creates it). Re-marking a row with the state and data it already has is
accepted (so a write whose caller was cancelled can safely be re-issued); re-marking it with
different data is refused.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Awaitable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any

import attrs

from ...errors import LedgerError
from ..ledger_states import LedgerState
from .targets import check_options, is_shared_url, refused_target

__all__ = [
    "Claimed",
    "Lease",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerState",
    "LedgerStore",
    "LedgerSummary",
    "Pause",
    "SharedLedger",
    "WorkRule",
    "allowed_from",
    "check_transition",
    "columns_set",
    "entry_of",
    "is_shared_url",
    "must_match",
    "refusal",
    "refused_target",
]


def _freeze_paths(paths: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if paths is None else MappingProxyType(dict(paths))


@attrs.frozen
class LedgerEntry:
    """One row of the ledger: the latest known state of one input key.

    ``updated_at`` is in seconds since the epoch (the database server's clock for a shared
    ledger); ``owner`` names the process that wrote the row last or holds it (shared ledgers
    only: ``host:pid:tag``).
    """

    key: str
    input_index: int
    state: LedgerState
    job_id: str | None
    outcome: str | None
    error: str | None
    paths: Mapping[str, str] | None = attrs.field(converter=_freeze_paths, hash=False)
    updated_at: float
    owner: str | None = None


def entry_of(row: Sequence[Any]) -> LedgerEntry:
    """A :class:`LedgerEntry` from a row (either backend): key, input_index, state, job_id,
    outcome, error, paths (JSON text or None), updated_at, and owner where the row has one."""
    key, index, state, job_id, outcome, error, paths, updated_at, *owner = row
    return LedgerEntry(
        key=key,
        input_index=index,
        state=LedgerState(state),
        job_id=job_id,
        outcome=outcome,
        error=error,
        paths=None if paths is None else json.loads(paths),
        updated_at=updated_at,
        owner=owner[0] if owner else None,
    )


@attrs.frozen
class Lease:
    """A row held by a process: ``expires_in`` seconds from now (negative: already expired,
    the process stopped renewing it)."""

    owner: str
    key: str
    expires_in: float


@attrs.frozen
class Pause:
    """The batch's shared rate pause: creates resume in ``resume_in`` seconds (0: none in
    force); ``quota`` is the daily-quota refusal that stopped every create, if one came."""

    resume_in: float
    quota: str | None


@attrs.frozen
class LedgerSummary:
    """The job book of a batch: counts per state, per process, leases and the rate pause.

    ``counts`` has every state (zeros included); ``by_owner`` maps a process (``host:pid:tag``)
    to the counts of the rows it wrote last; ``held`` how many rows each process holds now;
    ``oldest_lease`` the lease nearest to (or furthest past) its expiry. A SQLite ledger is one
    process's: it has no owners, leases or shared pause (``by_owner`` and ``held`` empty,
    ``oldest_lease`` and ``pause`` None). ``batch`` is ``(chute_id, method)`` once a shared
    run has bound the ledger.
    """

    location: str
    counts: Mapping[LedgerState, int]
    by_owner: Mapping[str, Mapping[LedgerState, int]] = attrs.field(factory=dict)
    held: Mapping[str, int] = attrs.field(factory=dict)
    oldest_lease: Lease | None = None
    pause: Pause | None = None
    batch: tuple[str, str] | None = None

    @property
    def total(self) -> int:
        """How many inputs the ledger knows."""
        return sum(self.counts.values())


_S = LedgerState
#: For each target state, the states a row may be in before it (None: no row yet).
_ALLOWED_FROM: dict[LedgerState, frozenset[LedgerState | None]] = {
    _S.TODO: frozenset(),  # only loading creates it
    _S.CREATING: frozenset({None, _S.TODO, _S.NOT_SUBMITTED}),
    _S.SUBMITTED: frozenset({_S.CREATING, _S.UNKNOWN, _S.SUBMITTED}),
    _S.UNKNOWN: frozenset({_S.CREATING, _S.UNKNOWN}),
    _S.NOT_SUBMITTED: frozenset({_S.CREATING, _S.NOT_SUBMITTED}),
    _S.FINISHED: frozenset({_S.SUBMITTED, _S.FINISHED}),
    _S.FAILED: frozenset({_S.SUBMITTED, _S.FAILED}),
    _S.DOWNLOADED: frozenset({_S.FINISHED, _S.DOWNLOADED}),
    _S.CANCELLED: frozenset({_S.TODO, _S.NOT_SUBMITTED, _S.SUBMITTED, _S.CANCELLED}),
}
#: Columns that must match when a row is re-marked with the state it already has.
_MUST_MATCH: dict[LedgerState, tuple[str, ...]] = {
    _S.SUBMITTED: ("job_id",),
    _S.FINISHED: ("outcome",),
    _S.FAILED: ("outcome",),
}


#: The columns each mark sets, besides ``state`` (``creating`` also clears the others).
_SETS: dict[LedgerState, tuple[str, ...]] = {
    _S.CREATING: ("input_index",),
    _S.SUBMITTED: ("job_id", "error"),
    _S.UNKNOWN: ("error",),
    _S.NOT_SUBMITTED: ("error",),
    _S.FINISHED: ("outcome", "error"),
    _S.FAILED: ("outcome", "error"),
    _S.DOWNLOADED: ("paths",),
    _S.CANCELLED: ("error",),
}


def columns_set(target: LedgerState) -> tuple[str, ...]:
    """The columns a mark into ``target`` sets (besides ``state`` and ``updated_at``)."""
    return _SETS[target]


def allowed_from(target: LedgerState) -> frozenset[LedgerState | None]:
    """The states a row may be in before it becomes ``target`` (None: no row yet)."""
    return _ALLOWED_FROM[target]


def must_match(target: LedgerState) -> tuple[str, ...]:
    """The columns a re-mark of a row already in ``target`` must leave unchanged."""
    return _MUST_MATCH.get(target, ())


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
        for column in must_match(target):
            if getattr(current, column) != values[column]:
                raise LedgerError(
                    f"ledger key {key!r} is already {target.value} with {column}="
                    f"{getattr(current, column)!r}, refusing {column}={values[column]!r}"
                )


def refusal(
    current: LedgerEntry | None,
    key: str,
    target: LedgerState,
    values: Mapping[str, Any],
    *,
    or_entry: bool,
) -> tuple[LedgerEntry | None, LedgerError | None] | None:
    """What the caller of a write its backend refused gets, ``current`` being the row as it
    is: the row itself for an ``or_entry`` write, else :func:`check_transition`'s error; None
    when the rule allows the write (the backend knows why it was refused)."""
    if or_entry and current is not None:
        return current, None
    try:
        check_transition(current, key, target, values)
    except LedgerError as exc:
        return None, exc
    return None


class Ledger(abc.ABC):
    """A durable record of a bulk run, one row per input key: the batch's job book.

    ``await Ledger.open(target)`` opens a SQLite file (a path) or a shared PostgreSQL ledger
    (a ``postgresql://`` URL). Every ``mark_*`` returns only once its write is committed
    durably; each raises :class:`LedgerError` for an illegal transition.
    """

    @classmethod
    async def open(cls, target: str | os.PathLike[str], **options: Any) -> Ledger:
        """Open (or create) the ledger at ``target``: a SQLite file path, or a
        ``postgresql://`` URL (extra ``chutes-jobs[postgres]``).

        ``options`` go to the backend (both: ``max_batch``, and ``create=False`` to open only
        a ledger that exists, creating and migrating nothing, as the job-book commands do;
        SQLite: ``writer``, ``"process"`` or ``"thread"``; PostgreSQL: ``lease``, seconds from
        1 to 86,400, also ``?lease=`` in the URL). Raises
        :class:`LedgerError` if the target cannot be opened, holds something else, is a URL
        of another scheme, or an option is unknown or out of range.
        """
        if (refused := refused_target(target)) is not None:
            raise LedgerError(refused)
        shared = is_shared_url(target)
        check_options("postgresql" if shared else "sqlite", options)
        if shared:
            try:
                from .postgres import PostgresLedger
            except ImportError as exc:  # the extra is not installed
                raise LedgerError(
                    f"a postgresql:// ledger needs psycopg ({exc.name} is missing): "
                    "pip install 'chutes-jobs[postgres]'"
                ) from None
            return await PostgresLedger.open(str(target), **options)
        from .sqlite import SqliteLedger

        return await SqliteLedger.open(target, **options)

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the ledger lives: the file path, or the URL without its password."""

    # -- reads
    @abc.abstractmethod
    async def get(self, key: str) -> LedgerEntry | None:
        """The entry of ``key``, or None if the ledger has never seen it."""

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those ``keys`` the ledger knows, by key (one consistent read)."""

    @abc.abstractmethod
    async def entries(self, state: LedgerState | None = None) -> list[LedgerEntry]:
        """Every entry (or those in ``state``), ordered by input index, then key."""

    @abc.abstractmethod
    async def counts(self) -> dict[LedgerState, int]:
        """How many keys are in each state (every state present, zeros included)."""

    @abc.abstractmethod
    async def summary(self) -> LedgerSummary:
        """The batch's totals: counts per state, per process, leases, the rate pause."""

    # -- writes
    def begin_create(self, key: str, index: int) -> Awaitable[LedgerEntry | None]:
        """:meth:`mark_creating` when ``key`` is new, ``todo`` or ``not_submitted`` (None);
        else the entry the ledger holds, nothing written. (An awaitable, so a backend may hand
        out its own future, which a caller can shield without a task.)"""
        return self._get_then_mark(key, index)

    async def _get_then_mark(self, key: str, index: int) -> LedgerEntry | None:
        entry = await self.get(key)
        if entry is not None and entry.state not in (_S.TODO, _S.NOT_SUBMITTED):
            return entry
        await self.mark_creating(key, index)
        return None

    @abc.abstractmethod
    async def mark_creating(self, key: str, index: int) -> None:
        """Record, before sending it, that a create is about to be sent for ``key``.

        Refused unless ``key`` is new, ``todo`` (and, shared, claimed by this process) or
        ``not_submitted``: the double-create guard.
        """

    @abc.abstractmethod
    async def mark_submitted(self, key: str, job_id: str) -> None:
        """Record the job id a create answered with (from ``creating`` or ``unknown``)."""

    @abc.abstractmethod
    async def mark_unknown(self, key: str, error: str) -> None:
        """Record that the create may have reached the server but its answer was lost."""

    @abc.abstractmethod
    async def mark_not_submitted(self, key: str, error: str) -> None:
        """Record that the create was refused before acting (the key may be retried)."""

    @abc.abstractmethod
    async def mark_finished(
        self, key: str, *, outcome: str, failed: bool, error: str | None = None
    ) -> None:
        """Record a submitted job's final ``outcome`` (e.g. its status) and, if any, ``error``."""

    @abc.abstractmethod
    async def mark_downloaded(self, key: str, paths: Mapping[str, str]) -> None:
        """Record where a finished job's outputs were written: ``{filename: path}``."""

    @abc.abstractmethod
    async def mark_cancelled(self, key: str, note: str) -> None:
        """Record that the key's job was deleted (or, not created yet, never will be)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Apply every queued write, then let go of the storage. Idempotent."""

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


#: What ``submit_many`` needs of a ledger backend (the name the run is typed against).
LedgerStore = Ledger


@attrs.frozen
class WorkRule:
    """Which rows a shared run works on, and which it keeps holding.

    ``states``: rows in these states are claimed whenever no live lease holds them.
    ``retry_states``: these only when written before the run started, so an input refused
    (or found unknown) during this run is not tried again in a loop. ``hold``: after a write
    into one of these states the process keeps the row (it goes on following the job); after
    any other write the row's lease is released.
    """

    states: frozenset[LedgerState]
    retry_states: frozenset[LedgerState]
    hold: frozenset[LedgerState]


@attrs.frozen
class Claimed:
    """A row claimed by this process: its entry and its input's JSON arguments (None for a
    row written without them, e.g. by ``mark_creating`` on a key never loaded)."""

    entry: LedgerEntry
    args: str | None


class SharedLedger(Ledger):
    """A ledger many processes share: inputs are loaded once, rows are claimed under a lease
    this process renews, and a rate pause or a quota stop is seen by every process."""

    @property
    @abc.abstractmethod
    def owner(self) -> str:
        """This process's name in the ledger: ``host:pid:tag``."""

    @property
    @abc.abstractmethod
    def lease(self) -> float:
        """Seconds a claim lasts unless renewed."""

    @abc.abstractmethod
    async def start_run(self, chute_id: str, method: str, rule: WorkRule) -> None:
        """Bind the ledger to its batch (refusing another chute or method: LedgerError), note
        when this run started (database clock) and what it works on."""

    @abc.abstractmethod
    async def load(self, rows: Sequence[tuple[str, int, str]]) -> int:
        """Load inputs ``(key, index, args JSON)`` as ``todo``; a key already there is left
        as it is. How many were new."""

    @abc.abstractmethod
    async def claim(self, limit: int, exclude: Sequence[str] = ()) -> list[Claimed]:
        """Claim up to ``limit`` rows the run works on that no live lease holds (``FOR UPDATE
        SKIP LOCKED``), skipping ``exclude``; in input order."""

    @abc.abstractmethod
    async def outstanding(self, exclude: Sequence[str] = ()) -> tuple[int, float | None]:
        """Rows the run works on that this process does not hold (held by others, or free),
        and the seconds until the first of the others' leases expires (None: none held)."""

    @abc.abstractmethod
    async def renew(self) -> int:
        """Extend every lease this process holds by :attr:`lease` seconds; how many."""

    @abc.abstractmethod
    async def release(self, key: str) -> None:
        """Give up the lease on ``key`` (the run stopped working on it), state unchanged."""

    @abc.abstractmethod
    async def publish_pause(self, seconds: float) -> None:
        """Pause every process's creates for ``seconds`` from now (never shortens a pause)."""

    @abc.abstractmethod
    async def publish_quota(self, message: str) -> None:
        """Stop every process's creates: the daily quota is exhausted."""

    @abc.abstractmethod
    async def read_pause(self) -> Pause:
        """The shared pause now; ``quota`` only when recorded since this run started."""
