"""The shared ledger: one PostgreSQL database that any number of processes work a batch from.

``await Ledger.open("postgresql://user@host/db")`` (extra ``chutes-jobs[postgres]``: psycopg 3
with ``psycopg_pool``). The tables (:mod:`.postgres_schema`) are created and migrated on open.
Marks are group-committed by one writer (:mod:`.postgres_writer`); reads, claims, lease renewals
and the pause row use a small pool. Every connection runs with ``synchronous_commit = on``: a
mark returns once the server has made it durable.

What each guarantee rests on:

* loading is idempotent: ``INSERT ... ON CONFLICT (key) DO NOTHING`` (keys sorted, so two
  loaders never deadlock);
* one process per input: a claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` over rows no live
  lease holds, setting ``owner`` and ``lease_until`` in the same statement;
* leases are timed by the database server's clock (``now()``), never a machine's own, and
  renewed by their holder every third of :attr:`PostgresLedger.lease`;
* the create rule: ``todo -> creating`` needs the row's ``owner`` to be this process and is
  committed before the POST; a row left ``creating`` under an expired lease is claimed by
  another process, which records it ``unknown``; a ``todo`` row under an expired lease is
  simply claimed and created.

``lease=SECONDS`` in the URL's query (or ``Ledger.open(url, lease=...)``) sets the lease
(default 30 s); the rest of the URL goes to libpq as it is.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..._redact import redact_url
from ...errors import LedgerError
from .base import (
    Claimed,
    Lease,
    LedgerEntry,
    LedgerState,
    LedgerSummary,
    Pause,
    SharedLedger,
    WorkRule,
    entry_of,
)
from .postgres_schema import LEDGER, META, PAUSE, check_current, migrate
from .postgres_writer import ROW_COLUMNS, PgWrite, PgWriter
from .targets import checked_max_batch

__all__ = ["DEFAULT_LEASE", "LEASE_RANGE", "PostgresLedger"]

#: Seconds a claim lasts unless renewed.
DEFAULT_LEASE = 30.0
#: Seconds a lease may last, lowest and highest.
LEASE_RANGE = (1.0, 86_400.0)
_CONNECT_TIMEOUT = 10
_S = LedgerState
_Conn = psycopg.AsyncConnection[tuple[Any, ...]]


def split_url(url: str) -> tuple[str, float | None]:
    """The URL without our own ``lease`` parameter (the rest as given, for libpq), and that
    parameter (None: not given); raises :class:`LedgerError` for a lease given twice or not
    a number."""
    base, question, query = url.partition("?")
    params = query.split("&") if question else []
    leases = [p.partition("=")[2] for p in params if p.partition("=")[0] == "lease"]
    rest = "&".join(p for p in params if p.partition("=")[0] != "lease")
    if len(leases) > 1:
        raise LedgerError(f"ledger {redact_url(url)}: lease is given {len(leases)} times")
    lease = None
    if leases:
        try:
            lease = float(unquote(leases[0]))
        except ValueError:
            raise LedgerError(
                f"ledger {redact_url(url)}: lease={unquote(leases[0])!r} is not a number of seconds"
            ) from None
    return (f"{base}?{rest}" if rest else base), lease


def checked_lease(lease: object, where: str) -> float:
    """``lease`` as seconds, or :class:`LedgerError` unless it is a number within
    :data:`LEASE_RANGE` (shorter, a process's own claims could expire between renewals)."""
    if isinstance(lease, bool) or not isinstance(lease, int | float):
        raise LedgerError(f"ledger {where}: the lease must be a number of seconds, got {lease!r}")
    low, high = LEASE_RANGE
    if not low <= lease <= high:  # NaN too
        raise LedgerError(
            f"ledger {where}: the lease must be {low:g} to {high:g} seconds, got {lease}"
        )
    return float(lease)


def _batch(value: str) -> tuple[str, str]:
    chute_id, method = json.loads(value)
    return str(chute_id), str(method)


async def _configure(conn: _Conn) -> None:
    """Every connection: durable commits whatever the server's default."""
    await conn.execute("SET synchronous_commit = on")


class PostgresLedger(SharedLedger):
    """A ledger in a PostgreSQL database, shared by every process given its URL.

    Open with :meth:`Ledger.open`; every ``mark_*`` returns once committed durably.
    """

    def __init__(
        self,
        conninfo: str,
        location: str,
        lease: float,
        pool: AsyncConnectionPool[Any],
        max_batch: int,
    ) -> None:
        """Use :meth:`Ledger.open`."""
        self._conninfo = conninfo
        self._location = location
        self._lease = lease
        self._pool = pool
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self._writer = PgWriter(self._connect, self._owner, lease, location, max_batch)
        self._closed = False
        self._started: float | None = None
        self._work = "false"

    @classmethod
    async def open(  # type: ignore[override]
        cls, url: str, *, lease: float | None = None, max_batch: int = 1024, create: bool = True
    ) -> PostgresLedger:
        """Connect, create or migrate the tables (with ``create=False``, only check that
        they are there and current); raises :class:`LedgerError` when the server cannot be
        reached or holds no ledger of this version."""
        conninfo, from_url = split_url(url)
        lease = lease if lease is not None else from_url if from_url is not None else DEFAULT_LEASE
        location = redact_url(url)
        lease, max_batch = checked_lease(lease, location), checked_max_batch(max_batch)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo, min_size=1, max_size=4, open=False, configure=_configure,
            kwargs={"autocommit": True}, name="chutes-jobs-ledger",
            timeout=_CONNECT_TIMEOUT,  # a call waits this long for a connection, not 30 s
        )  # fmt: skip
        ledger = cls(conninfo, location, lease, pool, max_batch)
        conn = await ledger._connect()
        try:
            await (migrate if create else check_current)(conn, ledger._location)
            await pool.open(wait=True, timeout=_CONNECT_TIMEOUT)
        except BaseException as exc:
            await conn.close()
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise LedgerError(f"cannot open ledger {ledger._location}: {exc}") from None
            raise
        ledger._writer.start(conn)
        return ledger

    async def _connect(self) -> _Conn:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
        except psycopg.Error as exc:
            raise LedgerError(f"cannot open ledger {self._location}: {exc}") from None
        await _configure(conn)
        return conn

    @property
    def location(self) -> str:
        """The URL, its password masked."""
        return self._location

    @property
    def owner(self) -> str:
        """This process's name in the ledger: ``host:pid:tag``."""
        return self._owner

    @property
    def lease(self) -> float:
        """Seconds a claim lasts unless renewed."""
        return self._lease

    @property
    def commit_count(self) -> int:
        """How many write transactions were committed so far."""
        return self._writer.commits

    def __repr__(self) -> str:
        return f"<PostgresLedger {self._location!r}{' closed' if self._closed else ''}>"

    async def close(self) -> None:
        """Commit every queued write, give up this process's leases, disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        try:
            await self._execute(
                f"UPDATE {LEDGER} SET lease_until = NULL WHERE owner = %s "
                "AND lease_until IS NOT NULL",
                (self._owner,),
            )
        except LedgerError:
            pass  # unreachable: the leases expire on their own
        finally:
            await self._pool.close()

    # -- plumbing

    async def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        if self._closed:
            raise LedgerError(f"ledger {self._location} is closed")
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {self._location}: {exc}") from None

    async def _execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return int(cursor.rowcount)
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {self._location}: {exc}") from None

    def _queue(self, key: str, target: LedgerState, **values: Any) -> asyncio.Future[Any]:
        return self._queue_write(key, target, or_entry=False, **values)

    def _queue_write(
        self, key: str, target: LedgerState, *, or_entry: bool, **values: Any
    ) -> asyncio.Future[Any]:
        if self._closed:
            raise LedgerError(f"ledger {self._location} is closed")
        future = asyncio.get_running_loop().create_future()
        return self._writer.submit(PgWrite(key, target, values, future, or_entry=or_entry))

    # -- reads

    async def get(self, key: str) -> LedgerEntry | None:
        """The entry of ``key``, or None if the ledger has never seen it."""
        rows = await self._fetch(f"SELECT {ROW_COLUMNS} FROM {LEDGER} WHERE key = %s", (key,))
        return entry_of(rows[0]) if rows else None

    async def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those ``keys`` the ledger knows, by key (one consistent read)."""
        sql = f"SELECT {ROW_COLUMNS} FROM {LEDGER} WHERE key = ANY(%s)"
        return {e.key: e for e in map(entry_of, await self._fetch(sql, (list(keys),)))}

    async def entries(self, state: LedgerState | None = None) -> list[LedgerEntry]:
        """Every entry (or those in ``state``), ordered by input index, then key."""
        where, params = ("WHERE state = %s", (str(state),)) if state is not None else ("", ())
        sql = f"SELECT {ROW_COLUMNS} FROM {LEDGER} {where} ORDER BY input_index, key"
        return [entry_of(row) for row in await self._fetch(sql, params)]

    async def counts(self) -> dict[LedgerState, int]:
        """How many keys are in each state (every state present, zeros included)."""
        counts = dict.fromkeys(LedgerState, 0)
        for state, n in await self._fetch(f"SELECT state, count(*) FROM {LEDGER} GROUP BY 1"):
            counts[LedgerState(state)] = n
        return counts

    async def summary(self) -> LedgerSummary:
        """Counts per state and per process, leases held, the oldest lease, the pause."""
        by_owner: dict[str, dict[LedgerState, int]] = {}
        sql = f"SELECT owner, state, count(*) FROM {LEDGER} WHERE owner IS NOT NULL GROUP BY 1, 2"
        for owner, state, n in await self._fetch(sql):
            by_owner.setdefault(owner, dict.fromkeys(LedgerState, 0))[LedgerState(state)] = n
        held_sql = f"SELECT owner, count(*) FROM {LEDGER} WHERE lease_until IS NOT NULL GROUP BY 1"
        oldest = await self._fetch(
            f"SELECT owner, key, extract(epoch FROM lease_until - now())::float8 FROM {LEDGER} "
            "WHERE lease_until IS NOT NULL ORDER BY lease_until LIMIT 1"
        )
        batch = await self._fetch(f"SELECT value FROM {META} WHERE name = 'batch'")
        return LedgerSummary(
            location=self._location,
            counts=await self.counts(),
            by_owner=by_owner,
            held=dict(await self._fetch(held_sql)),
            oldest_lease=Lease(*oldest[0]) if oldest else None,
            pause=await self.read_pause(),
            batch=_batch(batch[0][0]) if batch else None,
        )

    # -- writes

    async def mark_creating(self, key: str, index: int) -> None:
        """Record, before sending it, that a create is about to be sent for ``key``.

        Refused unless ``key`` is new, or ``todo``/``not_submitted`` and claimed by this
        process (:class:`LeaseLostError` when another process claimed it since).
        """
        await self._queue(key, _S.CREATING, input_index=index)

    def begin_create(self, key: str, index: int) -> asyncio.Future[LedgerEntry | None]:
        """:meth:`mark_creating` when ``key`` is new (None), else the entry as it is (one
        write, in order with the others)."""
        future = self._queue_write(key, _S.CREATING, or_entry=True, input_index=index)
        return future

    async def mark_submitted(self, key: str, job_id: str) -> None:
        """Record the job id a create answered with (from ``creating`` or ``unknown``)."""
        await self._queue(key, _S.SUBMITTED, job_id=job_id, error=None)

    async def mark_unknown(self, key: str, error: str) -> None:
        """Record that the create may have reached the server but its answer was lost."""
        await self._queue(key, _S.UNKNOWN, error=error)

    async def mark_not_submitted(self, key: str, error: str) -> None:
        """Record that the create was refused before acting (the key may be retried)."""
        await self._queue(key, _S.NOT_SUBMITTED, error=error)

    async def mark_finished(
        self, key: str, *, outcome: str, failed: bool, error: str | None = None
    ) -> None:
        """Record a submitted job's final ``outcome`` (e.g. its status) and, if any, ``error``."""
        target = _S.FAILED if failed else _S.FINISHED
        await self._queue(key, target, outcome=outcome, error=error)

    async def mark_downloaded(self, key: str, paths: Mapping[str, str]) -> None:
        """Record where a finished job's outputs were written: ``{filename: path}``."""
        encoded = json.dumps({str(name): str(path) for name, path in paths.items()})
        await self._queue(key, _S.DOWNLOADED, paths=encoded)

    async def mark_cancelled(self, key: str, note: str) -> None:
        """Record that the key's job was deleted (or, not created yet, never will be)."""
        await self._queue(key, _S.CANCELLED, error=note)

    # -- sharing

    async def start_run(self, chute_id: str, method: str, rule: WorkRule) -> None:
        """Bind the ledger to ``(chute_id, method)`` (another batch's ledger is refused), note
        when this run started and which rows it works on."""
        wanted = json.dumps([chute_id, method])
        await self._execute(
            f"INSERT INTO {META} VALUES ('batch', %s) ON CONFLICT (name) DO NOTHING", (wanted,)
        )
        rows = await self._fetch(
            f"SELECT value, extract(epoch FROM now())::float8 FROM {META} WHERE name = 'batch'"
        )
        found, self._started = rows[0]
        if json.loads(found) != [chute_id, method]:
            chute, other = json.loads(found)
            raise LedgerError(
                f"ledger {self._location} holds the batch of chute {chute!r} method {other!r}, "
                f"not {chute_id!r} {method!r}: use another database for another batch"
            )
        states = ", ".join(f"'{s}'" for s in sorted(rule.states)) or "NULL"
        retry = ", ".join(f"'{s}'" for s in sorted(rule.retry_states)) or "NULL"
        self._work = (
            f"(state IN ({states}) OR (state IN ({retry}) AND updated_at < {self._started!r}))"
        )
        self._writer.hold = rule.hold

    async def load(self, rows: Sequence[tuple[str, int, str]]) -> int:
        """Load inputs ``(key, index, args JSON)`` as ``todo``; keys already there stay."""
        ordered = sorted(rows)  # one lock order for every loader: no deadlocks
        return await self._execute(
            f"INSERT INTO {LEDGER} (key, input_index, args, state, updated_at) "
            "SELECT k, i, a, 'todo', extract(epoch FROM now()) "
            "FROM unnest(%b::text[], %b::int8[], %b::text[]) AS v(k, i, a) "
            "ON CONFLICT (key) DO NOTHING",
            ([r[0] for r in ordered], [r[1] for r in ordered], [r[2] for r in ordered]),
        )

    async def claim(self, limit: int, exclude: Sequence[str] = ()) -> list[Claimed]:
        """Claim up to ``limit`` rows this run works on that no live lease holds."""
        rows = await self._fetch(
            f"WITH c AS (SELECT key FROM {LEDGER} WHERE {self._work} "
            "AND (lease_until IS NULL OR lease_until < now()) "
            "AND NOT (key = ANY(%(exclude)b::text[])) "
            "ORDER BY input_index LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {LEDGER} AS l SET owner = %(owner)s, "
            "lease_until = now() + %(lease)s * interval '1 second' FROM c WHERE l.key = c.key "
            f"RETURNING {', '.join('l.' + c for c in ROW_COLUMNS.split(', '))}, l.args",
            {"exclude": list(exclude), "limit": limit, "owner": self._owner, "lease": self._lease},
        )
        claimed = [Claimed(entry_of(row[:-1]), row[-1]) for row in rows]
        return sorted(claimed, key=lambda c: c.entry.input_index)

    async def outstanding(self, exclude: Sequence[str] = ()) -> tuple[int, float | None]:
        """Rows this run works on that this process does not hold, and the seconds until the
        first live lease of another process expires."""
        rows = await self._fetch(
            "SELECT count(*), extract(epoch FROM min(lease_until) FILTER "
            f"(WHERE lease_until > now()) - now())::float8 FROM {LEDGER} WHERE {self._work} "
            "AND NOT (key = ANY(%(exclude)b::text[])) AND (owner IS DISTINCT FROM %(owner)s "
            "OR lease_until IS NULL OR lease_until < now())",
            {"exclude": list(exclude), "owner": self._owner},
        )
        count, first_expiry = rows[0]
        return int(count), first_expiry

    async def renew(self) -> int:
        """Extend every lease this process holds (rows locked right now are skipped: their
        writer sets the lease itself)."""
        return await self._execute(
            f"UPDATE {LEDGER} SET lease_until = now() + %(lease)s * interval '1 second' "
            f"WHERE key IN (SELECT key FROM {LEDGER} WHERE owner = %(owner)s "
            "AND lease_until IS NOT NULL ORDER BY key FOR UPDATE SKIP LOCKED)",
            {"owner": self._owner, "lease": self._lease},
        )

    async def release(self, key: str) -> None:
        """Give up the lease on ``key`` (queued with the marks, so it lands after them)."""
        if self._closed:
            raise LedgerError(f"ledger {self._location} is closed")
        future = asyncio.get_running_loop().create_future()
        await self._writer.submit(PgWrite(key, _S.TODO, {}, future, release=True))

    async def publish_pause(self, seconds: float) -> None:
        """Pause every process's creates for ``seconds`` from now (never shortens a pause)."""
        await self._execute(
            f"UPDATE {PAUSE} SET resume_at = greatest(resume_at, now() + %s * interval "
            "'1 second'), updated_by = %s WHERE id = 1",
            (seconds, self._owner),
        )

    async def publish_quota(self, message: str) -> None:
        """Stop every process's creates: the daily quota is exhausted."""
        await self._execute(
            f"UPDATE {PAUSE} SET quota = %s, quota_at = now(), updated_by = %s WHERE id = 1",
            (message, self._owner),
        )

    async def read_pause(self) -> Pause:
        """The shared pause now; ``quota`` only when recorded since this run started (all of
        them when no run started)."""
        rows = await self._fetch(
            "SELECT greatest(0, extract(epoch FROM resume_at - now()))::float8, quota, "
            f"extract(epoch FROM quota_at)::float8 FROM {PAUSE} WHERE id = 1"
        )
        resume_in, quota, quota_at = rows[0]
        if quota_at is not None and self._started is not None and quota_at < self._started:
            quota = None
        return Pause(resume_in=resume_in, quota=quota)
