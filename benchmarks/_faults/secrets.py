"""Scenario 7: the sweep. Every log record (DEBUG included), exception and repr the other
scenarios produced has been shown to the :class:`~.report.Sweep`; this scenario adds the
calls most likely to carry a credential into an error (refused keys and tokens, a worker's
token URLs failing, a hotkey session's lost create) and reports what the sweep found."""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

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
    calls = _Calls(sweep)
    async with Emulator(demo_chute=False) as emu:
        add_worker_chute(emu)
        await _credential_errors(emu, calls, seed)
    checked = ", ".join(f"{n:,} {kind}" for kind, n in sweep.checked.items())
    return [
        Figure(
            NAME,
            "calls with refused credentials or failing worker URLs raising an error",
            f"{calls.made - len(calls.silent)}/{calls.made}",
            not calls.silent,
            why=first_of(calls.silent),
        ),
        Figure(
            NAME,
            f"secrets in {checked}",
            f"{len(sweep.leaks)}",
            not sweep.leaks and all(sweep.checked.values()),
            why=first_of(sweep.leaks),
        ),
    ]


@dataclass
class _Calls:
    """Calls made to raise: the sweep gets each error; a call that raised none is listed."""

    sweep: Sweep
    made: int = 0
    silent: list[str] = field(default_factory=list)

    async def expect_error(self, what: str, call: Callable[[], object]) -> None:
        """Call ``call`` (awaiting what it returns, if awaitable), expecting an exception."""
        self.made += 1
        try:
            result = call()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            self.sweep.exception(exc)
        else:
            self.silent.append(f"{what}: no error")


async def _credential_errors(emu: Emulator, calls: _Calls, seed: int) -> None:
    sweep = calls.sweep
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
    for number, session in enumerate(sessions):
        async with session:
            create = functools.partial(session.create_job, WORKER_CHUTE, WORKER_METHOD)
            await calls.expect_error(f"session {number}: create", create)
            await calls.expect_error(
                f"session {number}: read", session.job(str(uuid.uuid4())).refresh
            )
        sweep.reprs([session])
    async with cj.ChutesSession(base_url=base, api_key=emu.api_key, retry_policy=policy) as user:
        await _worker_errors(emu, user, calls)


async def _worker_errors(emu: Emulator, user: cj.ChutesSession, calls: _Calls) -> None:
    """A worker whose token is wrong, whose uploads fail, whose status URL is for another
    server; a create whose answer is lost and a job read that fails for good."""
    handle = await user.create_job(WORKER_CHUTE, WORKER_METHOD, {"secrets": True})
    status_url = emu.job_status_url(handle.id)
    worker = user.job_from_status_url(status_url)
    another_jobs_token = emu.tokens.issue(str(uuid.uuid4()))
    wrong = user.job_from_status_url(f"{emu.base_url}/jobs/{handle.id}?token={another_jobs_token}")
    await calls.expect_error("finish with another job's token", lambda: wrong.finish(result={}))
    elsewhere = status_url.replace(emu.base_url, "http://127.0.0.2:1")
    await calls.expect_error(
        "a status URL of another server", lambda: user.job_from_status_url(elsewhere)
    )
    emu.faults.add("upload", status=500, times=None)
    with scratch_dir(NAME) as folder:
        (folder / "a.txt").write_text("a")
        targets = await worker.finish(result={"x": 1}, outputs=folder)
        report = await worker.upload_outputs(targets)
    emu.faults.clear()
    await calls.expect_error("failed uploads", report.raise_for_failures)
    calls.sweep.reprs([worker, wrong, targets, report, await worker.complete()])
    emu.faults.add("create", drop_after_handling=True)
    await calls.expect_error(
        "a create whose answer is lost", lambda: user.create_job(WORKER_CHUTE, WORKER_METHOD)
    )
    emu.faults.add("get", status=500, times=None)
    await calls.expect_error("a read failing for good", handle.refresh)
    emu.faults.clear()
