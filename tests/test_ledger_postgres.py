"""The shared PostgreSQL ledger against a real server: schema migration, loading, claims,
leases, the create rule across processes, the shared pause and quota, the job book."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from chutes_jobs.bulk.ledger import Ledger, LedgerError, LedgerState, SharedLedger, WorkRule
from chutes_jobs.bulk.ledger.postgres import split_url
from chutes_jobs.bulk.ledger.postgres_schema import SCHEMA_VERSION
from chutes_jobs.errors import LeaseLostError

S = LedgerState
CREATES = WorkRule(frozenset({S.TODO, S.CREATING}), frozenset({S.NOT_SUBMITTED}),
                   frozenset({S.CREATING}))  # fmt: skip


async def shared(url: str, **options: Any) -> SharedLedger:
    opened = await Ledger.open(url, **options)
    assert isinstance(opened, SharedLedger)
    return opened


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[SharedLedger, SharedLedger]]:
    """Two processes' views of one batch (two owners, their own connections)."""
    a, b = await shared(postgres_url), await shared(postgres_url)
    for ledger in (a, b):
        await ledger.start_run("chute", "echo", CREATES)
    yield a, b
    await a.close()
    await b.close()


def rows(n: int, start: int = 0) -> list[tuple[str, int, str]]:
    return [(f"k{i:04}", i, f'{{"i": {i}}}') for i in range(start, start + n)]


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


# ----------------------------------------------------------------------------- schema


async def test_processes_starting_at_once_migrate_once(postgres_url: str) -> None:
    opened = await asyncio.gather(*(Ledger.open(postgres_url) for _ in range(6)))
    for ledger in opened:
        await ledger.close()
    async with await Ledger.open(postgres_url):  # and again: nothing to do
        pass
    assert sql(postgres_url, "SELECT value FROM chutes_jobs_meta") == [(str(SCHEMA_VERSION),)]
    assert sql(postgres_url, "SELECT count(*) FROM chutes_jobs_pause") == [(1,)]


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    async with await Ledger.open(postgres_url):
        pass
    sql(postgres_url, "UPDATE chutes_jobs_meta SET value = '99'")
    with pytest.raises(LedgerError, match=r"schema version 99.*reads version 1.*upgrade"):
        await Ledger.open(postgres_url)


async def test_unreachable_server_names_the_url_without_its_password() -> None:
    url = "postgresql://bob:hunter2@127.0.0.1:1/batch?connect_timeout=2"
    with pytest.raises(LedgerError, match="cannot open ledger") as caught:
        await Ledger.open(url)
    assert "hunter2" not in str(caught.value)
    assert "postgresql://bob:***@127.0.0.1:1/batch" in str(caught.value)


async def test_lease_comes_from_the_url(postgres_url: str) -> None:
    ledger = await shared(f"{postgres_url}?lease=2.5")
    try:
        assert ledger.lease == 2.5
    finally:
        await ledger.close()
    with pytest.raises(LedgerError, match=r"ledger postgresql://.*: lease='soon' is not a number"):
        await Ledger.open(f"{postgres_url}?lease=soon")
    # Shorter than a second, a process's own claims could expire between its renewals.
    for bad in ("0", "-1", "nan", "inf", "0.0001", "0.5", "1e300", "86401"):
        with pytest.raises(LedgerError, match="the lease must be 1 to 86400 seconds"):
            await Ledger.open(f"{postgres_url}?lease={bad}")
    for twice in ("lease=0&lease=5", "lease=5&lease=0", "lease=5&lease=5"):
        with pytest.raises(LedgerError, match="lease is given 2 times"):
            await Ledger.open(f"{postgres_url}?{twice}")
    for wrong in ("5", True, None, [5]):
        with pytest.raises(LedgerError, match="the lease must be a number of seconds"):
            await Ledger.open(postgres_url, lease=wrong if wrong is not None else "")
    for option, value in (("max_batch", 0), ("max_batch", 1.5), ("timeout", 3)):
        with pytest.raises(LedgerError, match=f"ledger option {option}={value!r}"):
            await Ledger.open(postgres_url, **{option: value})


async def test_a_url_is_handed_to_libpq_as_given_but_its_lease(postgres_url: str) -> None:
    # A socket-style URL (no host before the path) once lost its "//" on the way.
    parts = urlsplit(postgres_url)
    socket_style = (
        f"postgresql://{parts.path}?host={parts.hostname}&port={parts.port}&lease=7"
        f"&user={parts.username}"
    )
    async with await shared(socket_style) as ledger:
        assert ledger.lease == 7
        await ledger.start_run("chute", "echo", CREATES)
    assert split_url(socket_style) == (
        f"postgresql://{parts.path}?host={parts.hostname}&port={parts.port}&user={parts.username}",
        7.0,
    )
    assert split_url("postgresql://") == ("postgresql://", None)
    assert split_url("postgres://u@h/db?lease=2%2E5") == ("postgres://u@h/db", 2.5)


async def test_opening_without_create_changes_nothing_and_needs_only_select(
    postgres_url: str,
) -> None:
    # The job-book commands (ledger status/ls/cancel) open this way: a typo in a database
    # name once got a new, empty ledger, and a read-only role could not read a batch.
    with pytest.raises(LedgerError, match=r"no chutes-jobs ledger in postgresql://.*no table"):
        await Ledger.open(postgres_url, create=False)
    assert sql(postgres_url, "SELECT to_regclass('chutes_jobs_meta')") == [(None,)]
    async with await shared(postgres_url) as writer:
        await writer.start_run("chute", "echo", CREATES)
        await writer.load(rows(3))
    reader = f"reader_{uuid.uuid4().hex[:12]}"
    sql(postgres_url, f"CREATE ROLE {reader} LOGIN")
    try:
        sql(postgres_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        sql(postgres_url, f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
        as_reader = postgres_url.replace("//postgres@", f"//{reader}@", 1)
        async with await Ledger.open(as_reader, create=False) as book:
            assert (await book.summary()).total == 3
            assert [e.key for e in await book.entries(S.TODO)] == ["k0000", "k0001", "k0002"]
        with pytest.raises(LedgerError, match="permission denied"):  # what create=False spares
            await Ledger.open(as_reader)
    finally:
        sql(postgres_url, f"DROP OWNED BY {reader}")
        sql(postgres_url, f"DROP ROLE {reader}")


async def test_a_ledger_holds_one_batch(postgres_url: str) -> None:
    async with await shared(postgres_url) as ledger:
        assert isinstance(ledger, SharedLedger)
        await ledger.start_run("chute", "echo", CREATES)
        await ledger.start_run("chute", "echo", CREATES)  # the same batch again: fine
        with pytest.raises(LedgerError, match="holds the batch of chute 'chute' method 'echo'"):
            await ledger.start_run("chute", "files", CREATES)
        assert (await ledger.summary()).batch == ("chute", "echo")


# ----------------------------------------------------------------------------- loading, claims


async def test_loading_is_idempotent_whoever_loads(pair: tuple[SharedLedger, SharedLedger]) -> None:
    a, b = pair
    loaded = await asyncio.gather(a.load(rows(300)), b.load(rows(300, start=100)))
    assert sum(loaded) == 400
    assert await a.load(rows(400)) == 0
    counts = await a.counts()
    assert counts[S.TODO] == 400
    assert (await b.get("k0250")).input_index == 250  # type: ignore[union-attr]


async def test_each_row_is_claimed_by_exactly_one_process(
    pair: tuple[SharedLedger, SharedLedger],
) -> None:
    a, b = pair
    await a.load(rows(500))

    async def claim_all(ledger: SharedLedger) -> list[str]:
        got: list[str] = []
        while batch := await ledger.claim(37):
            got += [c.entry.key for c in batch]
        return got

    mine, theirs = await asyncio.gather(claim_all(a), claim_all(b))
    assert not set(mine) & set(theirs)
    assert sorted(mine + theirs) == [key for key, _, _ in rows(500)]
    assert mine and theirs
    held = (await a.summary()).held
    assert held == {a.owner: len(mine), b.owner: len(theirs)}


async def test_claims_carry_the_input_and_skip_excluded_keys(
    pair: tuple[SharedLedger, SharedLedger],
) -> None:
    a, _ = pair
    await a.load(rows(3))
    claimed = await a.claim(10, exclude=["k0001"])
    assert [(c.entry.key, c.entry.state, c.args) for c in claimed] == [
        ("k0000", S.TODO, '{"i": 0}'),
        ("k0002", S.TODO, '{"i": 2}'),
    ]
    assert all(c.entry.owner == a.owner for c in claimed)


# ----------------------------------------------------------------------------- the create rule


async def test_only_the_claimer_may_mark_creating(pair: tuple[SharedLedger, SharedLedger]) -> None:
    a, b = pair
    await a.load(rows(1))
    with pytest.raises(LeaseLostError, match="not created here"):
        await a.mark_creating("k0000", 0)  # loaded, never claimed
    [claim] = await a.claim(1)
    with pytest.raises(LeaseLostError, match=f"claimed by {a.owner}"):
        await b.mark_creating("k0000", 0)
    await a.mark_creating("k0000", 0)
    await a.mark_submitted("k0000", "job-0")
    assert (await b.get("k0000")).state is S.SUBMITTED  # type: ignore[union-attr]
    assert claim.entry.state is S.TODO


async def test_an_unexpected_error_in_the_writer_fails_its_callers_and_writing_goes_on(
    pair: tuple[SharedLedger, SharedLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chutes_jobs.bulk.ledger.postgres_writer import PgWriter

    a, _ = pair
    await a.load(rows(2))
    await a.claim(2)
    real_statement = PgWriter._statement
    failures = iter([RuntimeError("injected")])

    async def statement_once_broken(self: PgWriter, batch: list[Any]) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return await real_statement(self, batch)

    monkeypatch.setattr(PgWriter, "_statement", statement_once_broken)
    with pytest.raises(LedgerError, match="RuntimeError: injected") as failed:
        await asyncio.wait_for(a.mark_creating("k0000", 0), timeout=60)  # a hang guard
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert (await a.get("k0000")).state is S.TODO  # type: ignore[union-attr]

    await a.mark_creating("k0001", 1)
    assert (await a.get("k0001")).state is S.CREATING  # type: ignore[union-attr]


async def test_an_expired_claim_before_the_post_is_claimed_again(postgres_url: str) -> None:
    dying = await shared(postgres_url, lease=1.0)  # the shortest lease allowed
    heir = await shared(postgres_url)
    try:
        for ledger in (dying, heir):
            await ledger.start_run("chute", "echo", CREATES)
        await dying.load(rows(2))
        assert len(await dying.claim(5)) == 2  # then "dies": no renewal
        assert await heir.claim(5) == []  # its leases are live
        left, expiry = await heir.outstanding()
        assert left == 2 and expiry is not None and 0 < expiry <= 1.0
        await asyncio.sleep(1.2)
        taken = await heir.claim(5)
        assert [c.entry.key for c in taken] == ["k0000", "k0001"]
        await heir.mark_creating("k0000", 0)
        with pytest.raises(LeaseLostError):  # the dead one's late write is refused
            await dying.mark_creating("k0001", 1)
    finally:
        await heir.close()
        await dying.close()


async def test_a_create_in_flight_when_its_lease_expired_is_claimed_as_creating(
    postgres_url: str,
) -> None:
    dying = await shared(postgres_url, lease=1.0)
    heir = await shared(postgres_url)
    try:
        for ledger in (dying, heir):
            await ledger.start_run("chute", "echo", CREATES)
        await dying.load(rows(1))
        await dying.claim(1)
        await dying.mark_creating("k0000", 0)  # the POST is out; the process dies
        await asyncio.sleep(1.2)
        [taken] = await heir.claim(1)
        assert taken.entry.state is S.CREATING  # never re-created: the run records it unknown
        await heir.mark_unknown("k0000", "its process stopped while creating")
        await dying.mark_submitted("k0000", "job-late")  # a late answer still teaches the id
        assert (await heir.get("k0000")).job_id == "job-late"  # type: ignore[union-attr]
    finally:
        await heir.close()
        await dying.close()


async def test_renewal_keeps_a_claim_and_release_hands_it_over(postgres_url: str) -> None:
    holder = await shared(postgres_url, lease=1.0)
    other = await shared(postgres_url)
    try:
        for ledger in (holder, other):
            await ledger.start_run("chute", "echo", CREATES)
        await holder.load(rows(2))
        await holder.claim(2)
        for _ in range(4):
            await asyncio.sleep(0.5)
            assert await holder.renew() == 2
        assert await other.claim(5) == []
        await holder.release("k0001")
        assert [c.entry.key for c in await other.claim(5)] == ["k0001"]
    finally:
        await other.close()
        await holder.close()


async def test_closing_releases_every_lease(pair: tuple[SharedLedger, SharedLedger]) -> None:
    a, b = pair
    await a.load(rows(4))
    await a.claim(4)
    await a.close()
    assert len(await b.claim(10)) == 4


async def test_refused_rows_of_this_run_are_not_retried_by_it(postgres_url: str) -> None:
    earlier = await shared(postgres_url)
    await earlier.start_run("chute", "echo", CREATES)
    await earlier.load(rows(2))
    for claim in await earlier.claim(2):
        await earlier.mark_creating(claim.entry.key, claim.entry.input_index)
        await earlier.mark_not_submitted(claim.entry.key, "400 bad disk size")
    await earlier.close()

    async with await shared(postgres_url) as rerun:
        assert isinstance(rerun, SharedLedger)
        await rerun.start_run("chute", "echo", CREATES)
        [first, second] = await rerun.claim(5)  # refused in an earlier run: retried
        await rerun.mark_creating(first.entry.key, 0)
        await rerun.mark_not_submitted(first.entry.key, "400 again")
        await rerun.release(second.entry.key)
        assert [c.entry.key for c in await rerun.claim(5)] == [second.entry.key]


# ----------------------------------------------------------------------------- pause, quota, book


async def test_a_pause_and_a_quota_reach_every_process(
    pair: tuple[SharedLedger, SharedLedger], postgres_url: str
) -> None:
    a, b = pair
    assert (await b.read_pause()).resume_in == 0
    await a.publish_pause(30)
    await a.publish_pause(1)  # never shortens a pause
    assert 25 < (await b.read_pause()).resume_in <= 30
    await a.publish_quota("429 Daily job quota exceeded")
    assert (await b.read_pause()).quota == "429 Daily job quota exceeded"

    async with await shared(postgres_url) as later:
        assert isinstance(later, SharedLedger)
        await later.start_run("chute", "echo", CREATES)
        assert (await later.read_pause()).quota is None  # recorded before it started


async def test_summary_shows_processes_leases_and_pause(
    pair: tuple[SharedLedger, SharedLedger],
) -> None:
    a, b = pair
    await a.load(rows(5))
    for claim in await a.claim(2):
        await a.mark_creating(claim.entry.key, claim.entry.input_index)
    await b.claim(1)
    summary = await b.summary()
    assert summary.counts[S.TODO] == 3 and summary.counts[S.CREATING] == 2
    assert summary.held == {a.owner: 2, b.owner: 1}
    assert summary.by_owner[a.owner][S.CREATING] == 2
    assert summary.oldest_lease is not None and summary.oldest_lease.owner in (a.owner, b.owner)
    assert 0 < summary.oldest_lease.expires_in <= a.lease
    assert summary.pause is not None and summary.pause.quota is None
