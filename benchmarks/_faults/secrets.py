"""Scenario 7: the sweep. Every log record (DEBUG included), exception and repr the other
scenarios produced has been shown to the :class:`~.report.Sweep`; this scenario adds the
calls most likely to carry a credential into an error (refused keys and tokens, a worker's
token URLs failing, a hotkey session's lost create) and reports what the sweep found."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import chutes_jobs as cj
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.store import new_api_key, new_oauth_token

from .fixtures import WORKER_CHUTE, WORKER_METHOD, add_worker_chute, quick_retries, scratch_dir
from .lost_creates import hotkey_seed
from .report import Figure, Sweep, first_of

__all__ = ["FULL", "REDUCED", "Size", "run"]

NAME = "secrets"


@dataclass(frozen=True)
class Size:
    """No size: the calls below run once."""


FULL = REDUCED = Size()


async def run(size: Size, sweep: Sweep, *, seed: int = 0) -> list[Figure]:
    """The credential-heavy calls, then the sweep's verdict over everything seen so far."""
    async with Emulator(demo_chute=False) as emu:
        add_worker_chute(emu)
        await _credential_errors(emu, sweep, seed)
    checked = ", ".join(f"{n:,} {kind}" for kind, n in sweep.checked.items())
    return [
        Figure(
            NAME,
            f"secrets in {checked}",
            f"{len(sweep.leaks)}",
            not sweep.leaks and all(sweep.checked.values()),
            why=first_of(sweep.leaks),
        )
    ]


async def _expect_error(sweep: Sweep, call: Callable[[], Awaitable[Any]]) -> None:
    try:
        await call()
    except Exception as exc:
        sweep.exception(exc)


async def _credential_errors(emu: Emulator, sweep: Sweep, seed: int) -> None:
    unknown_key = new_api_key(str(uuid.uuid4()))  # the right shape, not registered
    read_only = emu.add_oauth_token(["jobs:read"])
    unregistered = new_oauth_token()
    seed_hex = hotkey_seed(seed + 1)  # registered to nobody
    for value, what in (
        (emu.api_key, "API key"),
        (unknown_key, "API key"),
        (read_only, "OAuth token"),
        (unregistered, "OAuth token"),
        (seed_hex, "hotkey seed"),
    ):
        sweep.secret(value, what)
    base, policy = emu.base_url, quick_retries(2)
    sessions = [
        cj.ChutesSession(base_url=base, api_key=unknown_key, retry_policy=policy),
        cj.ChutesSession(base_url=base, api_key=read_only, retry_policy=policy),
        cj.ChutesSession(base_url=base, api_key=unregistered, retry_policy=policy),
        cj.ChutesSession(base_url=base, hotkey=seed_hex, retry_policy=policy),
        cj.ChutesSession(base_url=base, api_key=emu.api_key, hotkey=seed_hex, retry_policy=policy),
    ]
    for session in sessions:
        async with session:
            await _expect_error(sweep, lambda s=session: s.create_job(WORKER_CHUTE, WORKER_METHOD))
            await _expect_error(sweep, lambda s=session: s.job(str(uuid.uuid4())).refresh())
        sweep.reprs([session])
    async with cj.ChutesSession(base_url=base, api_key=emu.api_key, retry_policy=policy) as user:
        await _worker_errors(emu, user, sweep)


async def _worker_errors(emu: Emulator, user: cj.ChutesSession, sweep: Sweep) -> None:
    """A worker whose token is wrong, whose uploads fail, whose status URL is for another
    server; a create whose answer is lost and a job read that fails for good."""
    handle = await user.create_job(WORKER_CHUTE, WORKER_METHOD, {"secrets": True})
    status_url = emu.job_status_url(handle.id)
    worker = user.job_from_status_url(status_url)
    another_jobs_token = emu.tokens.issue(str(uuid.uuid4()))
    wrong = user.job_from_status_url(f"{emu.base_url}/jobs/{handle.id}?token={another_jobs_token}")
    await _expect_error(sweep, lambda: wrong.finish(result={"x": 1}))
    await _expect_error(
        sweep,
        lambda: user.job_from_status_url(status_url.replace(emu.base_url, "http://127.0.0.2:1")),
    )
    emu.faults.add("upload", status=500, times=None)
    with scratch_dir(NAME) as folder:
        (folder / "a.txt").write_text("a")
        targets = await worker.finish(result={"x": 1}, outputs=folder)
        report = await worker.upload_outputs(targets)
    emu.faults.clear()
    await _expect_error(sweep, report.raise_for_failures)
    sweep.reprs([worker, wrong, targets, report, await worker.complete()])
    emu.faults.add("create", drop_after_handling=True)
    await _expect_error(sweep, lambda: user.create_job(WORKER_CHUTE, WORKER_METHOD))
    emu.faults.add("get", status=500, times=None)
    await _expect_error(sweep, handle.refresh)
    emu.faults.clear()
