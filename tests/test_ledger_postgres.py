"""The shared PostgreSQL ledger against a real server: schema, claims, leases, sharing."""

from __future__ import annotations

from chutes_jobs.bulk.ledger import Ledger, LedgerState

S = LedgerState


async def test_smoke(postgres_url: str) -> None:
    async with await Ledger.open(postgres_url) as ledger:
        await ledger.mark_creating("a", 0)
        await ledger.mark_submitted("a", "job-a")
        entry = await ledger.get("a")
        assert entry is not None and entry.state is S.SUBMITTED
        print(await ledger.summary())
