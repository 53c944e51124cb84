"""Scenario 3: creates whose answer is lost (the job is created and billed, then the connection
drops, or the answer is cut short): each is sent once, reported unknown, and never sent
again by a re-run with the same ledger. Creates are signed with a hotkey here (the session
also holds an API key, for its reads), so the secret sweep sees a hotkey session at work."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bittensor_wallet import Keypair

import chutes_jobs as cj
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.faults import Fault

from .fixtures import (
    WORKER_CHUTE,
    WORKER_METHOD,
    add_worker_chute,
    quick_retries,
    scratch_dir,
    submit_all,
)
from .report import Figure, Sweep, count_figure

__all__ = ["FULL", "REDUCED", "Size", "run"]

NAME = "lost"


@dataclass(frozen=True)
class Size:
    """``creates`` inputs, about a third of whose answers are lost."""

    creates: int


FULL = Size(creates=300)
REDUCED = Size(creates=100)


def hotkey_seed(seed: int) -> str:
    """A hotkey seed (``0x`` + 64 hex) derived from the scenario's seed."""
    return "0x" + hashlib.sha256(f"chutes-faults-hotkey-{seed}".encode()).hexdigest()


def _plan_losses(emu: Emulator, rng: random.Random, creates: int) -> list[Fault]:
    """Seeded runs of lost answers among the creates: dropped, or cut short (``clip_to``)."""
    faults: list[Fault] = []
    covered = 0
    while covered < creates - 10:
        after, times = rng.randint(0, 4), rng.randint(1, 3)
        if rng.random() < 0.5:
            fault = emu.faults.add("create", drop_after_handling=True, times=times, after=after)
        else:
            fault = emu.faults.add("create", clip_to=rng.randint(0, 60), times=times, after=after)
        faults.append(fault)
        covered += after + times
    return faults


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """A lone create_job, then a batch with a ledger, then the same batch again."""
    rng = random.Random(f"{seed}-lost")
    seed_hex = hotkey_seed(seed)
    with scratch_dir(NAME) as root:
        async with Emulator(demo_chute=False) as emu:
            add_worker_chute(emu)
            user = emu.add_user(hotkey=Keypair.create_from_seed(seed_hex).ss58_address)
            sweep.secret(user.api_key, "API key")
            sweep.secret(seed_hex, "hotkey seed")
            session = cj.ChutesSession(
                base_url=emu.base_url,
                api_key=user.api_key,
                hotkey=seed_hex,
                retry_policy=quick_retries(),
            )
            async with session:
                figures = [await _lone_create(emu, session, sweep)]
                figures += await _batch(emu, session, size.creates, rng, root / "run.db", sweep)
                sweep.reprs([session])
    return figures


async def _lone_create(emu: Emulator, session: cj.ChutesSession, sweep: Sweep) -> Figure:
    emu.faults.add("create", drop_after_handling=True)
    before = emu.counts["create"]
    claim = "a lone create_job whose answer is lost: raises, sent once"
    try:
        handle = await session.create_job(WORKER_CHUTE, WORKER_METHOD, {"lone": True})
    except cj.ChutesError as exc:
        sweep.exception(exc)
        sent = emu.counts["create"] - before
        value = f"{type(exc).__name__} after {exc.attempts} attempt(s), {sent} request(s)"
        return Figure(NAME, claim, value, sent == 1 == exc.attempts)
    return Figure(NAME, claim, f"returned job {handle.id}", False, why="no error was raised")


async def _submit(
    session: cj.ChutesSession, inputs: list[dict[str, Any]], ledger: Path, sweep: Sweep
) -> dict[int, cj.BulkResult]:
    results = await submit_all(session, inputs, ledger, sweep, concurrency=16)
    return {result.index: result for result in results}


async def _batch(
    emu: Emulator,
    session: cj.ChutesSession,
    creates: int,
    rng: random.Random,
    ledger: Path,
    sweep: Sweep,
) -> list[Figure]:
    inputs = [{"batch": "lost", "i": i} for i in range(creates)]
    faults = _plan_losses(emu, rng, creates)
    before = emu.counts["create"]
    first = await _submit(session, inputs, ledger, sweep)
    emu.faults.clear()
    sent = emu.counts["create"] - before
    lost = sum(f.fired for f in faults)
    dropped = sum(f.fired for f in faults if f.drop_after_handling)
    jobs = [j for j in emu.store.jobs.values() if j.job_args.get("batch") == "lost"]
    unknown = {i for i, r in first.items() if r.outcome is cj.BulkOutcome.UNKNOWN}
    second = await _submit(session, inputs, ledger, sweep)
    resent = emu.counts["create"] - before - sent
    changed = [
        f"input {i}: {first[i].outcome.value} then {r.outcome.value}"
        for i, r in second.items()
        if (i in unknown) != (r.outcome is cj.BulkOutcome.UNKNOWN)
    ]
    resent_lines = [f"{resent} create request(s) in the re-run"] if resent else []
    return [
        Figure(
            NAME,
            f"{creates} creates through submit_many, {lost} answers lost ({dropped} "
            f"dropped, {lost - dropped} cut short): each sent once",
            f"{sent} requests, {len(jobs)} jobs",
            sent == creates == len(jobs),
        ),
        Figure(
            NAME,
            "lost answers reported unknown",
            f"{len(unknown)}/{lost}",
            len(unknown) == lost and len(first) == creates,
        ),
        count_figure(
            NAME,
            "lost answers re-sent by a re-run with the same ledger",
            resent_lines + changed,
        ),
    ]
