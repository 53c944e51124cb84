"""``run_and_report`` and the emulator's local chutes (which run through it), end to end on the
emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yarl

from chutes_jobs import (
    OUTCOME_KEY,
    ChutesSession,
    Job,
    JobOutcome,
    RetryPolicy,
    file_id_for,
    run_and_report,
)
from chutes_jobs.emulator import Emulator

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(expose_status=True, schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})
        yield emulator


@pytest.fixture
async def user(emu: Emulator) -> AsyncIterator[ChutesSession]:
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as session:
        yield session


async def status_url(emu: Emulator, user: ChutesSession) -> str:
    return emu.job_status_url((await user.create_job("ext", "run")).id)


def stored(emu: Emulator, job_id: str, name: str) -> bytes:
    assert emu.data_dir is not None
    return (emu.data_dir / "blobs" / job_id / file_id_for(job_id, name)).read_bytes()


# ----------------------------------------------------------------------------- outcomes


async def test_outputs_and_result_are_reported(emu: Emulator, user: ChutesSession) -> None:
    seen: list[Path] = []

    async def fn(*, output_dir: Path, n: int) -> dict[str, Any]:
        seen.append(output_dir)
        (output_dir / "a" / "b").mkdir(parents=True)
        (output_dir / "a" / "b" / "c.bin").write_bytes(b"c" * n)
        (output_dir / "top.txt").write_text("top")
        return {"n": n}

    url = await status_url(emu, user)
    final = await run_and_report(url, fn, n=5000)
    job_id = final.job_id
    assert (
        final.is_finished
        and final.status == "complete"
        and final.result == {"n": 5000, "chutes_jobs": {"status": "complete"}}
    )
    assert sorted(f.filename for f in final.output_files.values()) == ["a/b/c.bin", "top.txt"]
    assert stored(emu, job_id, "a/b/c.bin") == b"c" * 5000
    assert stored(emu, job_id, "top.txt") == b"top"
    assert not seen[0].exists()  # the output folder is removed afterwards


async def test_a_failing_function_is_an_error_with_its_traceback(
    emu: Emulator, user: ChutesSession
) -> None:
    async def fn(*, output_dir: Path) -> None:
        (output_dir / "partial.log").write_text("half way")
        raise ValueError("boom")

    final = await run_and_report(await status_url(emu, user), fn)
    assert final.status == "error" and final.failed and final.is_finished
    detail = emu.job(final.job_id).error_detail
    assert detail is not None
    assert "Traceback" in detail and "ValueError: boom" in detail and "in fn" in detail
    assert stored(emu, final.job_id, "partial.log") == b"half way"  # outputs still go up


async def test_a_non_dict_return_is_wrapped(emu: Emulator, user: ChutesSession) -> None:
    async def fn(*, output_dir: Path) -> list[int]:
        return [1, 2]

    async def nothing(*, output_dir: Path) -> None:
        return None

    assert (await run_and_report(await status_url(emu, user), fn)).result == {
        "result": [1, 2],
        "chutes_jobs": {"status": "complete"},
    }
    assert (await run_and_report(await status_url(emu, user), nothing)).result == {
        "chutes_jobs": {"status": "complete"}
    }


async def test_a_return_value_that_is_not_json_makes_an_error(
    emu: Emulator, user: ChutesSession
) -> None:
    async def fn(*, output_dir: Path) -> dict[str, Any]:
        return {"when": {1, 2}}

    final = await run_and_report(await status_url(emu, user), fn)
    assert final.status == "error" and final.outcome is JobOutcome.FAILED
    assert final.result is not None and set(final.result) == {OUTCOME_KEY}
    detail = emu.job(final.job_id).error_detail or ""
    assert "return value cannot be sent as JSON" in detail and "set is not JSON" in detail
    assert final.outcome_detail is not None and "cannot be sent as JSON" in final.outcome_detail


async def test_cancellation_is_reported_as_cancelled_then_raised(
    emu: Emulator, user: ChutesSession
) -> None:
    started = asyncio.Event()

    async def fn(*, output_dir: Path) -> None:
        started.set()
        await asyncio.Event().wait()

    url = await status_url(emu, user)
    task = asyncio.create_task(run_and_report(url, fn))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job_id = yarl.URL(url).path.rsplit("/", 1)[1]
    stored_job = emu.job(job_id)
    assert stored_job.status == "cancelled" and stored_job.finished_at is not None
    assert stored_job.error_detail == "the job function was cancelled"


async def test_an_unsafe_output_name_still_reports_and_completes(
    emu: Emulator, user: ChutesSession
) -> None:
    async def fn(*, output_dir: Path) -> dict[str, int]:
        (output_dir / "back\\slash.txt").write_text("x")
        return {"v": 1}

    final = await run_and_report(await status_url(emu, user), fn)
    assert final.status == "error" and final.is_finished and final.failed
    assert final.result is not None and final.result["v"] == 1  # the function's own result
    assert "outputs not reported" in (emu.job(final.job_id).error_detail or "")
    assert "outputs not reported" in (final.outcome_detail or "")


async def test_the_handle_method_reuses_the_callers_session(
    emu: Emulator, user: ChutesSession
) -> None:
    async def fn(*, output_dir: Path, x: int) -> int:
        return x + 1

    url = await status_url(emu, user)
    async with ChutesSession(base_url=emu.base_url, retry_policy=FAST) as worker:
        pool = worker.http
        final = await worker.job_from_status_url(url).run_and_report(fn, x=1)
        assert worker.http is pool
    assert isinstance(final, Job) and final.result == {
        "result": 2,
        "chutes_jobs": {"status": "complete"},
    }


async def test_no_token_in_logs_over_a_run_with_a_retried_upload(
    emu: Emulator, user: ChutesSession, caplog: pytest.LogCaptureFixture
) -> None:
    async def fn(*, output_dir: Path) -> dict[str, str]:
        (output_dir / "o.bin").write_bytes(b"o" * 100_000)
        return {"ok": "yes"}

    url = await status_url(emu, user)
    emu.faults.add("upload", status=502, times=1)
    emu.faults.add("finish", status=503, times=1)
    caplog.set_level(logging.DEBUG)
    final = await run_and_report(url, fn)
    assert final.status == "complete"
    assert emu.counts["upload"] == 2 and emu.counts["finish"] == 2
    assert "retrying transfer call" in caplog.text and "retrying idempotent call" in caplog.text
    token = yarl.URL(url).query["token"]
    assert token not in caplog.text
    assert "token=" not in caplog.text.replace("token=***", "")


# ----------------------------------------------------------------------------- local chutes


async def test_the_demo_chute_runs_through_the_worker_api(
    emu: Emulator, user: ChutesSession, tmp_path: Path
) -> None:
    handle = await user.create_job("demo", "files", {"sizes": [0, 1000, 3_000_000], "seed": 7})
    final = await handle.wait(timeout=60)
    digests = final.result["files"]
    paths = await handle.download_outputs(tmp_path)
    assert sorted(paths) == ["file_000.bin", "file_001.bin", "sub/file_002.bin"]
    for name, path in paths.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[name]
    assert final.status == "complete" and final.instance is None


async def test_a_local_chute_retries_a_failed_upload(emu: Emulator, user: ChutesSession) -> None:
    emu.faults.add("upload", status=502, times=1)
    handle = await user.create_job("demo", "files", {"count": 1, "size": 10_000})
    final = await handle.wait(timeout=60)
    assert final.status == "complete" and emu.counts["upload"] == 2


async def test_local_chute_cancel_and_delete(emu: Emulator, user: ChutesSession) -> None:
    cancelled = await user.create_job("demo", "sleep", {"seconds": 60})
    deleted = await user.create_job("demo", "sleep", {"seconds": 60})
    while emu.job(cancelled.id).instance is None or emu.job(deleted.id).instance is None:
        await asyncio.sleep(0.01)
    assert emu.cancel_job(cancelled.id)
    await deleted.delete()
    await emu.wait_idle()
    assert emu.job(cancelled.id).status == "cancelled"
    assert emu.counts["finish"] == 1  # the deleted job's worker reported nothing
    assert not emu.cancel_job(cancelled.id)


async def test_a_job_cancelled_before_it_runs_is_reported_cancelled() -> None:
    async with Emulator(schedule_delay=30) as emu:
        async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as session:
            handle = await session.create_job("demo", "echo", {"a": 1})
        assert emu.cancel_job(handle.id)
        await emu.wait_job(handle.id)
        assert emu.job(handle.id).status == "cancelled"
        assert emu.job(handle.id).finished_at is not None
