"""Local chutes: jobs run in-process and report over HTTP through the worker routes."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from emu_client import Client

from chutes_jobs.emulator import Emulator


async def _finished(client: Client, job_id: str) -> dict[str, Any]:
    await client.emu.wait_job(job_id)
    answer = await client.get(job_id)
    assert answer.status == 200
    job: dict[str, Any] = answer.json
    assert job["finished_at"] is not None
    return job


async def test_demo_files_end_to_end(client: Client) -> None:
    sizes = [0, 1000, 2_500_000]
    created = await client.create("demo", "files", {"sizes": sizes, "seed": 3})
    job = await _finished(client, created.json["job_id"])
    digests = job["result"]["files"]
    assert sorted(digests) == ["file_000.bin", "file_001.bin", "sub/file_002.bin"]
    assert job["instance"] is None and job["instance_id"] is None
    assert client.emu.job(job["job_id"]).status == "complete"
    lengths = []
    for file_id, info in job["output_files"].items():
        assert file_id == str(uuid.uuid5(uuid.UUID(job["job_id"]), info["filename"]))
        assert info["uploaded"] is True
        body = (await client.download(job["job_id"], file_id)).body
        assert hashlib.sha256(body).hexdigest() == digests[info["filename"]]
        lengths.append(len(body))
    assert sorted(lengths) == sizes


async def test_demo_content_is_deterministic(client: Client) -> None:
    jobs = [await client.create("demo", "files", {"count": 1, "size": 5000}) for _ in range(2)]
    results = [(await _finished(client, j.json["job_id"]))["result"] for j in jobs]
    assert results[0] == results[1]


async def test_pending_running_finished(http: aiohttp.ClientSession) -> None:
    async with Emulator(schedule_delay=0.2) as emu:
        client = Client(emu, http)
        job_id = (await client.create("demo", "sleep", {"seconds": 0.3})).json["job_id"]
        pending = (await client.get(job_id)).json
        assert pending["instance"] is None and pending["finished_at"] is None
        await asyncio.sleep(0.3)
        running = (await client.get(job_id)).json
        assert running["instance_id"] is not None and running["finished_at"] is None
        assert running["instance"]["instance_id"] == running["instance_id"]
        finished = await _finished(client, job_id)
        assert finished["result"] == {"slept": 0.3, "chutes_jobs": {"status": "complete"}}


async def test_echo_and_wrapped_results(client: Client) -> None:
    async def answer(output_dir: Path, value: int) -> int:
        return value * 2

    client.emu.add_chute("calc", {"double": answer})
    echo = await client.create("demo", "echo", {"a": [1, 2], "_disk_gb": 50})
    double = await client.create("calc", "double", {"value": 21})
    assert (await _finished(client, echo.json["job_id"]))["result"] == {
        "a": [1, 2],
        "chutes_jobs": {"status": "complete"},
    }
    assert (await _finished(client, double.json["job_id"]))["result"] == {
        "result": 42,
        "chutes_jobs": {"status": "complete"},
    }


async def test_a_raising_chute_finishes_with_error_and_traceback(client: Client) -> None:
    job_id = (await client.create("demo", "fail", {"message": "boom"})).json["job_id"]
    job = await _finished(client, job_id)
    assert "status" not in job  # faithful: the outcome shows only through the record
    assert job["result"] == {"chutes_jobs": {"status": "error", "detail": "RuntimeError: boom"}}
    stored = client.emu.job(job_id)
    assert stored.status == "error"
    assert stored.error_detail is not None
    assert "Traceback" in stored.error_detail and "RuntimeError: boom" in stored.error_detail


async def test_cancel_job_reports_cancelled(client: Client) -> None:
    job_id = (await client.create("demo", "sleep", {"seconds": 60})).json["job_id"]
    while client.emu.job(job_id).instance is None:
        await asyncio.sleep(0.01)
    assert client.emu.cancel_job(job_id)
    job = await _finished(client, job_id)
    assert client.emu.job(job_id).status == "cancelled"
    record = job["result"]["chutes_jobs"]  # before or after the method started: both say so
    assert record["status"] == "cancelled" and "cancelled" in record["detail"]


async def test_delete_of_a_running_job_stops_it(client: Client) -> None:
    job_id = (await client.create("demo", "sleep", {"seconds": 60})).json["job_id"]
    answer = await client.call("DELETE", f"/jobs/{job_id}", headers=client.auth())
    assert answer.status == 200
    await asyncio.wait_for(client.emu.wait_job(job_id), 5)
    assert client.emu.counts["finish"] == 0
    assert (await client.get(job_id)).status == 404


async def test_two_hundred_concurrent_jobs(client: Client) -> None:
    async def one(i: int) -> tuple[int, str]:
        answer = await client.create("demo", "files", {"count": 1, "size": 100 + i, "seed": i})
        assert answer.status == 200
        return i, answer.json["job_id"]

    created = await asyncio.gather(*(one(i) for i in range(200)))
    assert len({job_id for _, job_id in created}) == 200
    await client.emu.wait_idle()

    async def check(i: int, job_id: str) -> None:
        job = (await client.get(job_id)).json
        assert job["finished_at"] is not None and job["job_args"]["seed"] == i
        ((file_id, info),) = job["output_files"].items()
        body = (await client.download(job_id, file_id)).body
        assert len(body) == 100 + i
        assert hashlib.sha256(body).hexdigest() == job["result"]["files"][info["filename"]]

    await asyncio.gather(*(check(i, job_id) for i, job_id in created))
    assert client.emu.counts["complete"] == 200 and client.emu.counts["upload"] == 200
