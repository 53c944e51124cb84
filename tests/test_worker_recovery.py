"""A worker's report survives what real servers do: lost answers, unreadable 2xx answers, a
restart after its complete landed, and a live server answering finish 500 every time.

End to end on the emulator over loopback HTTP; the test acts as the worker of ``ext`` jobs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chutes_jobs import ChutesSession, RetryPolicy, ServerError, TransportError
from chutes_jobs.emulator import Emulator

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(expose_status=True, schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})  # jobs left to the test, acting as the worker
        yield emulator


@pytest.fixture
async def user(emu: Emulator) -> AsyncIterator[ChutesSession]:
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=FAST) as s:
        yield s


def worker_session(emu: Emulator) -> ChutesSession:
    """A fresh worker process's session: no user credentials, fast retries."""
    return ChutesSession(base_url=emu.base_url, retry_policy=FAST)


async def new_status_url(emu: Emulator, user: ChutesSession) -> str:
    return emu.job_status_url((await user.create_job("ext", "run")).id)


async def report_with_lost_complete_answer(emu: Emulator, url: str, out: Path) -> None:
    """finish → upload → complete, where complete lands but every answer to it is lost."""
    emu.faults.add("complete", drop_after_handling=True, times=None)
    async with worker_session(emu) as session:
        handle = session.job_from_status_url(url)
        targets = await handle.finish(result={"n": 1}, outputs={"o.txt": out})
        assert (await handle.upload_outputs(targets)).ok
        with pytest.raises(TransportError):
            await handle.complete()  # the process dies here
    emu.faults.clear("complete")


# ----------------------------------------------------------------------------- restart


async def test_a_restarted_worker_completes_without_a_snapshot(
    emu: Emulator, user: ChutesSession, tmp_path: Path
) -> None:
    url = await new_status_url(emu, user)
    out = tmp_path / "o.txt"
    out.write_text("hi")
    await report_with_lost_complete_answer(emu, url, out)
    completes = emu.counts["complete"]

    async with worker_session(emu) as restarted:  # a worker token cannot read the job back
        final = await restarted.job_from_status_url(url).complete()

    assert emu.counts["complete"] == completes + 1  # answered 400 Job already finished
    assert final.assumed and final.is_finished and not final.failed
    assert final.job_id == url.split("/jobs/")[1].split("?")[0]
    assert final.status is None and final.result is None and final.output_files == {}
    stored = emu.job(final.job_id)
    assert stored.status == "complete" and stored.finished_at is not None


async def test_a_restarted_worker_with_user_credentials_reads_the_job_back(
    emu: Emulator, user: ChutesSession, tmp_path: Path
) -> None:
    url = await new_status_url(emu, user)
    out = tmp_path / "o.txt"
    out.write_text("hi")
    await report_with_lost_complete_answer(emu, url, out)
    final = await user.job_from_status_url(url).complete()
    assert not final.assumed
    assert final.status == "complete" and final.result.items() >= {"n": 1}.items()
    assert [f.uploaded for f in final.output_files.values()] == [True]


async def test_run_and_report_after_a_restart_returns_the_job_as_done(
    emu: Emulator, user: ChutesSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The restarted worker runs its function again; finish and complete both answer
    ``400 Job already finished``: that is done, not an error."""
    url = await new_status_url(emu, user)
    out = tmp_path / "o.txt"
    out.write_text("hi")
    await report_with_lost_complete_answer(emu, url, out)
    ran = []

    async def fn(*, output_dir: Path) -> dict[str, Any]:
        ran.append(output_dir)
        return {"n": 2}

    async with worker_session(emu) as restarted:
        with caplog.at_level(logging.INFO, logger="chutes_jobs"):
            final = await restarted.job_from_status_url(url).run_and_report(fn)

    assert ran and final.assumed and final.is_finished and not final.failed
    assert "was already finished" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert emu.job(final.job_id).result.items() >= {"n": 1}.items()  # the first run's report stands


# ----------------------------------------------------------------------------- unreadable 2xx


async def test_an_unreadable_finish_answer_is_sent_again(
    emu: Emulator, user: ChutesSession, tmp_path: Path
) -> None:
    """A re-sent finish hands out fresh upload URLs: the outputs still land."""
    url = await new_status_url(emu, user)
    out = tmp_path / "o.txt"
    out.write_text("hi")
    emu.faults.add("finish", clip_to=30)
    async with worker_session(emu) as worker:
        handle = worker.job_from_status_url(url)
        final = await handle.run_and_report(_writes_one_file)
    assert emu.counts["finish"] == 2
    assert final.status == "complete" and not final.assumed
    assert [f.uploaded for f in final.output_files.values()] == [True]


@pytest.mark.parametrize("credentials", [False, True], ids=["worker-token", "api-key"])
async def test_an_unreadable_complete_answer_is_sent_again_and_counts_as_done(
    emu: Emulator, user: ChutesSession, credentials: bool
) -> None:
    url = await new_status_url(emu, user)
    emu.faults.add("complete", clip_to=0)
    async with worker_session(emu) as worker:
        handle = (user if credentials else worker).job_from_status_url(url)
        await handle.finish(result={"n": 3})
        final = await handle.complete()
    assert emu.counts["complete"] == 2  # the second answered 400 Job already finished
    assert final.is_finished and final.result.items() >= {"n": 3}.items()
    assert final.assumed is not credentials  # read back when the session can
    assert emu.job(final.job_id).status == "complete"


async def test_an_unreadable_upload_answer_is_sent_again(
    emu: Emulator, user: ChutesSession, tmp_path: Path
) -> None:
    url = await new_status_url(emu, user)
    out = tmp_path / "o.txt"
    out.write_text("hello")
    emu.faults.add("upload", status=200, html=True)
    async with worker_session(emu) as worker:
        handle = worker.job_from_status_url(url)
        report = await handle.upload_outputs(await handle.finish(outputs={"o.txt": out}))
    assert report.ok and emu.counts["upload"] == 2


async def _writes_one_file(*, output_dir: Path) -> dict[str, Any]:
    (output_dir / "o.txt").write_text("hi")
    return {"ok": True}


# ----------------------------------------------------------------------------- live quirks


@pytest.fixture
async def quirky() -> AsyncIterator[Emulator]:
    async with Emulator(live_quirks=True, schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})
        yield emulator


async def poison(emu: Emulator, job_id: str) -> None:
    """Finish as an older client would, without ``result``: the live server stores the string
    ``"error"`` and answers 500 to every later read of the job."""
    async with aiohttp.ClientSession() as http:
        body = b'{"status": "complete"}'
        async with http.post(emu.job_status_url(job_id), data=body) as answer:
            assert answer.status == 500


async def test_a_finish_answered_500_every_time_is_bounded_and_the_job_still_closes(
    quirky: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: a job whose stored result the live server cannot serve. Finish is
    tried ``max_attempts`` times (within the policy's deadline), then given up; complete still
    closes the job (the live server commits it, then answers 500; the re-sent complete gets
    ``400 Job already finished``), and run_and_report returns a Job marked assumed."""
    async with ChutesSession(base_url=quirky.base_url, api_key=quirky.api_key) as user:
        job_id = (await user.create_job("ext", "run")).id
    await poison(quirky, job_id)
    quirky.faults.add("finish", status=500, times=None)  # what the poisoned route answers
    async with worker_session(quirky) as worker:
        handle = worker.job_from_status_url(quirky.job_status_url(job_id))
        final = await handle.run_and_report(_writes_one_file)
    assert quirky.counts["finish"] == 1 + FAST.max_attempts  # the poison, then ours
    assert final.assumed and final.is_finished
    assert quirky.job(job_id).finished_at is not None  # closed on the server
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [ServerError.__name__ in r.getMessage() for r in failures] == [True]


async def test_a_finish_with_a_valid_result_heals_a_poisoned_job(
    quirky: Emulator, tmp_path: Path
) -> None:
    """Our finish always sends an object (or null): it replaces the stored string, and the
    job can be read again."""
    async with ChutesSession(base_url=quirky.base_url, api_key=quirky.api_key) as user:
        job_id = (await user.create_job("ext", "run")).id
        await poison(quirky, job_id)
        async with worker_session(quirky) as worker:
            handle = worker.job_from_status_url(quirky.job_status_url(job_id))
            final = await handle.run_and_report(_writes_one_file)
        assert not final.assumed and final.result.items() >= {"ok": True}.items()
        assert (await user.job(job_id).refresh()).result.items() >= {"ok": True}.items()
