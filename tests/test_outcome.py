"""A finished job's outcome (issue 19): failed, succeeded or unknown, read the same way by
``Job.outcome``, ``wait()`` and ``submit_many``, over the default emulator (which, like the
live server, never sends ``status``)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import chutes_jobs as cj
from chutes_jobs import (
    OUTCOME_KEY,
    BulkOutcome,
    ChutesSession,
    ConfigurationError,
    JobFailedError,
    JobOutcome,
    JobUnreadableError,
    RetryPolicy,
)
from chutes_jobs.emulator import Emulator
from chutes_jobs.models import MAX_RECORDED_DETAIL, job_from_json, outcome_record
from chutes_jobs.polling import PollPolicy

FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
JOB_ID = "8c1d6f0e-3a52-4b7e-9f21-6d0b3c9e4a17"
NEVER_UPLOADED = "output files never uploaded: out.bin"
ENDED_CANCELLED = "job ended with status 'cancelled'"


def _finished(**fields: Any) -> dict[str, Any]:
    return {"job_id": JOB_ID, "finished_at": "2026-03-01T12:00:00", **fields}


def _files(uploaded: bool) -> dict[str, Any]:
    return {"f1": {"filename": "out.bin", "path": "p", "uploaded": uploaded}}


def _recorded(status: str, detail: str | None = None) -> dict[str, Any]:
    return {"mine": 1, OUTCOME_KEY: outcome_record(status, detail)}


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("data", "outcome", "detail"),
    [
        # 1. a status the server sends decides (the server accounted for the uploads)
        (_finished(status="complete", result=_recorded("error", "x")), JobOutcome.SUCCEEDED, None),
        (_finished(status="error", error_detail="OOM"), JobOutcome.FAILED, "OOM"),
        (_finished(status="error", result=_recorded("error", "boom")), JobOutcome.FAILED, "boom"),
        (_finished(status="complete", output_files=_files(False)), JobOutcome.SUCCEEDED, None),
        # 2. the worker's record in result
        (_finished(result=_recorded("complete")), JobOutcome.SUCCEEDED, None),
        (_finished(result=_recorded("error", "E: x")), JobOutcome.FAILED, "E: x"),
        (_finished(result=_recorded("cancelled")), JobOutcome.FAILED, ENDED_CANCELLED),
        (
            _finished(result=_recorded("complete"), output_files=_files(False)),
            JobOutcome.FAILED,
            NEVER_UPLOADED,
        ),
        # 3. an output listed but never uploaded
        (_finished(output_files=_files(False)), JobOutcome.FAILED, NEVER_UPLOADED),
        # 4. nothing says: unknown, never success
        (_finished(result={"mine": 1}, output_files=_files(True)), JobOutcome.UNKNOWN, None),
        (_finished(result=None), JobOutcome.UNKNOWN, None),
        (_finished(result={OUTCOME_KEY: "complete"}), JobOutcome.UNKNOWN, None),  # not a record
        (_finished(result={OUTCOME_KEY: {"status": 3}}), JobOutcome.UNKNOWN, None),
        # not finished: no outcome yet
        ({"job_id": JOB_ID, "status": "error", "result": _recorded("error")}, None, None),
    ],
)  # fmt: skip
def test_the_reading_order(data: dict[str, Any], outcome: JobOutcome | None, detail: str) -> None:
    job = job_from_json(data)
    assert job.outcome is outcome
    assert job.outcome_detail == detail
    assert job.failed is (outcome is JobOutcome.FAILED)


def test_the_recorded_detail_is_the_first_line_capped() -> None:
    assert outcome_record("complete", None) == {"status": "complete"}
    assert outcome_record("error", "\n\n  first line  \nsecond\n") == {
        "status": "error",
        "detail": "first line",
    }
    long = outcome_record("error", "y" * 50_000 + "\nrest")["detail"]
    assert len(long) == MAX_RECORDED_DETAIL and long.endswith("…")


def test_job_failed_error_carries_status_and_detail() -> None:
    job = job_from_json(_finished(result=_recorded("error", "RuntimeError: no")))
    error = JobFailedError(job)
    assert (error.status, error.detail) == ("error", "RuntimeError: no")
    assert str(error) == f"job {JOB_ID} finished with status 'error': RuntimeError: no"
    missing = JobFailedError(job_from_json(_finished(output_files=_files(False))))
    assert missing.status is None
    assert str(missing) == f"job {JOB_ID} failed: output files never uploaded: out.bin"


# ----------------------------------------------------------------------------- end to end


async def test_demo_fail_is_failed_with_its_message(chutes_session: ChutesSession) -> None:
    handle = await chutes_session.create_job("demo", "fail", {"message": "out of unicorns"})
    with pytest.raises(JobFailedError) as caught:
        await handle.wait(poll=FAST_POLL)
    job = caught.value.job
    assert job.status is None  # the default emulator is faithful: no status in the JSON
    assert job.outcome is JobOutcome.FAILED and job.failed
    assert caught.value.detail == "RuntimeError: out of unicorns"
    assert "RuntimeError: out of unicorns" in str(caught.value)
    assert (await handle.wait(raise_on_failure=False)).outcome is JobOutcome.FAILED


async def test_a_bad_argument_fails_the_job(chutes_session: ChutesSession) -> None:
    handle = await chutes_session.create_job("demo", "files", {"count": "abc"})
    with pytest.raises(JobFailedError, match="TypeError"):
        await handle.wait(poll=FAST_POLL)


async def test_a_dict_result_is_kept_beside_the_record(chutes_session: ChutesSession) -> None:
    handle = await chutes_session.create_job("demo", "echo", {"a": [1, 2], "b": "x"})
    job = await handle.wait(poll=FAST_POLL)
    assert job.outcome is JobOutcome.SUCCEEDED and job.outcome_status == "complete"
    assert job.result == {"a": [1, 2], "b": "x", OUTCOME_KEY: {"status": "complete"}}


async def _raw_worker(emu: Emulator, job_id: str, body: dict[str, Any]) -> None:
    """Finish and complete a job as a worker that never used this library: raw HTTP."""
    url = emu.job_status_url(job_id)
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as finish:
            assert finish.status == 200, await finish.text()
        async with http.put(url, json={"status": "done"}) as complete:
            assert complete.status == 200, await complete.text()


async def test_a_worker_without_this_library_leaves_the_outcome_unknown(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    chutes_emulator.add_chute("ext", {"run": None})
    handle = await chutes_session.create_job("ext", "run")
    await _raw_worker(chutes_emulator, handle.id, {"status": "error", "result": {"n": 1}})
    job = await handle.wait(poll=FAST_POLL)  # unknown is not a failure: no raise
    assert job.outcome is JobOutcome.UNKNOWN and not job.failed
    assert job.outcome_status is None and job.outcome_detail is None
    assert chutes_emulator.job(handle.id).status == "error"  # stored, never returned


async def test_a_listed_output_never_uploaded_is_failed(
    chutes_emulator: Emulator, chutes_session: ChutesSession, tmp_path: Path
) -> None:
    chutes_emulator.add_chute("ext", {"run": None})
    raw = await chutes_session.create_job("ext", "run")
    body = {"status": "complete", "result": None, "output_filenames": ["lost.bin"]}
    await _raw_worker(chutes_emulator, raw.id, body)
    with pytest.raises(JobFailedError, match=r"output files never uploaded: lost\.bin"):
        await raw.wait(poll=FAST_POLL)

    ours = await chutes_session.create_job("ext", "run")  # a "complete" record, then no upload
    worker = chutes_session.job_from_status_url(chutes_emulator.job_status_url(ours.id))
    (tmp_path / "a.txt").write_text("a")
    await worker.finish(result={"k": 1}, outputs={"a.txt": tmp_path / "a.txt"})
    await worker.complete()
    with pytest.raises(JobFailedError) as caught:
        await ours.wait(poll=FAST_POLL)
    assert caught.value.status == "complete"
    assert caught.value.detail == "output files never uploaded: a.txt"


async def test_cancellation_is_recorded_as_a_failure(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    handle = await chutes_session.create_job("demo", "sleep", {"seconds": 60})
    while chutes_emulator.job(handle.id).instance is None:
        await asyncio.sleep(0.01)
    assert chutes_emulator.cancel_job(handle.id)
    with pytest.raises(JobFailedError) as caught:
        await handle.wait(poll=FAST_POLL)
    assert caught.value.status == "cancelled"
    assert caught.value.detail is not None and "cancelled" in caught.value.detail


async def test_run_and_report_records_each_outcome(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    chutes_emulator.add_chute("ext", {"run": None})

    async def raises(*, output_dir: Path) -> None:
        raise ValueError("x" * 5000 + "\nsecond line of the message")

    async def returns(*, output_dir: Path) -> int:
        return 7

    async def claims_the_key(*, output_dir: Path) -> dict[str, Any]:
        return {OUTCOME_KEY: {"status": "complete"}}

    async def run(fn: Any) -> cj.Job:
        handle = await chutes_session.create_job("ext", "run")
        await cj.run_and_report(chutes_emulator.job_status_url(handle.id), fn)
        return await handle.wait(poll=FAST_POLL, raise_on_failure=False)

    failed = await run(raises)
    record = failed.result[OUTCOME_KEY]
    assert failed.outcome is JobOutcome.FAILED and record["status"] == "error"
    assert len(record["detail"]) == MAX_RECORDED_DETAIL and record["detail"].endswith("…")
    assert record["detail"].startswith("ValueError: xxx")
    sent = chutes_emulator.job(failed.job_id).error_detail or ""
    assert "Traceback" in sent  # the full detail is still sent
    wrapped = await run(returns)
    assert wrapped.outcome is JobOutcome.SUCCEEDED
    assert wrapped.result == {"result": 7, OUTCOME_KEY: {"status": "complete"}}
    claimed = await run(claims_the_key)  # the function may not forge the record
    assert claimed.outcome is JobOutcome.FAILED
    assert f"cannot hold the key {OUTCOME_KEY!r}" in (claimed.outcome_detail or "")


async def test_finish_refuses_a_result_holding_the_key(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    chutes_emulator.add_chute("ext", {"run": None})
    handle = await chutes_session.create_job("ext", "run")
    worker = chutes_session.job_from_status_url(chutes_emulator.job_status_url(handle.id))
    with pytest.raises(ConfigurationError, match=OUTCOME_KEY):
        await worker.finish(result={OUTCOME_KEY: {"status": "complete"}})
    assert chutes_emulator.counts["finish"] == 0


async def test_submit_many_follows_the_outcome(chutes_emulator: Emulator) -> None:
    chutes_emulator.add_chute("ext", {"run": None})
    async with ChutesSession(
        base_url=chutes_emulator.base_url, api_key=chutes_emulator.api_key
    ) as session:
        assert chutes_emulator.demo_chute_id is not None
        failing = [
            r
            async for r in session.submit_many(
                chutes_emulator.demo_chute_id, "fail", [{"message": "boom"}], wait=True,
                poll=FAST_POLL,
            )
        ]  # fmt: skip
        echo = [
            r
            async for r in session.submit_many(
                chutes_emulator.demo_chute_id, "echo", [{"i": 1}], wait=True, poll=FAST_POLL
            )
        ]

        async def report_raw() -> None:  # an outside worker, without this library
            while not chutes_emulator.store.jobs or not any(
                j.chute.name == "ext" for j in chutes_emulator.store.jobs.values()
            ):
                await asyncio.sleep(0.01)
            [job] = [j for j in chutes_emulator.store.jobs.values() if j.chute.name == "ext"]
            await _raw_worker(chutes_emulator, job.job_id, {"status": "complete", "result": {}})

        reporter = asyncio.create_task(report_raw())
        unknown = [
            r async for r in session.submit_many("ext", "run", [{}], wait=True, poll=FAST_POLL)
        ]
        await reporter
    [failed] = failing
    assert failed.outcome is BulkOutcome.FAILED and isinstance(failed.error, JobFailedError)
    assert failed.error.detail == "RuntimeError: boom"
    [ok] = echo
    assert ok.outcome is BulkOutcome.FINISHED and ok.ok
    assert ok.job is not None and ok.job.outcome is JobOutcome.SUCCEEDED
    [unsure] = unknown
    assert unsure.outcome is BulkOutcome.FINISHED and unsure.ok
    assert unsure.job is not None and unsure.job.outcome is JobOutcome.UNKNOWN


async def test_a_job_answering_bare_500_forever_names_the_likely_cause() -> None:
    """On the live server, a finish with a non-object result breaks every later read."""
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002)
    async with Emulator(live_quirks=True, schedule_delay=0.01) as emu:
        emu.add_chute("ext", {"run": None})
        async with ChutesSession(
            base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy
        ) as session:
            handle = await session.create_job("ext", "run")
            async with aiohttp.ClientSession() as http:  # the official SDK: no result on error
                body = {"status": "error", "detail": "boom"}
                async with http.post(emu.job_status_url(handle.id), json=body) as answer:
                    assert answer.status == 500
            gets_before = emu.counts["get"]
            with pytest.raises(JobUnreadableError) as caught:
                await handle.refresh()
    assert emu.counts["get"] - gets_before == 3 == caught.value.attempts
    text = str(caught.value)
    assert "HTTP 500" in text and "3 attempts" in text
    assert "result that is not a JSON object" in text and handle.id in text
    assert isinstance(caught.value, cj.ServerError)


async def test_a_plain_server_error_keeps_its_own_text(
    chutes_emulator: Emulator, chutes_session: ChutesSession
) -> None:
    """Only a bare 500 gets the hint: a 503 with a detail stays what it is."""
    handle = await chutes_session.create_job("demo", "echo")
    chutes_emulator.faults.add("get", status=503, times=None)
    session = ChutesSession(
        base_url=chutes_emulator.base_url,
        api_key=chutes_emulator.api_key,
        retry_policy=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.002),
    )
    async with session:
        with pytest.raises(cj.ServerError) as caught:
            await session.job(handle.id).refresh()
    assert not isinstance(caught.value, JobUnreadableError)


def test_outcome_rules_do_not_mutate_the_job() -> None:
    data = _finished(result=_recorded("error", "x"), output_files=_files(False))
    before = copy.deepcopy(data)
    job = job_from_json(data)
    assert job.outcome is JobOutcome.FAILED and job.outcome is JobOutcome.FAILED
    assert data == before
