"""The fault plan, as a raw aiohttp client observes each kind of fault."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest
from emu_client import Client

from chutes_jobs.emulator import FaultPlan

SIZE = 3_000_000


async def _download_job(client: Client) -> tuple[str, str]:
    job_id = await client.finished_job({"big": b"z" * SIZE})
    return job_id, str(uuid.uuid5(uuid.UUID(job_id), "big"))


async def _received_before_error(client: Client, url: str) -> tuple[int, BaseException | None]:
    received = 0
    try:
        async with client.http.get(url, headers=client.auth()) as resp:
            assert resp.headers["Content-Length"] == str(SIZE)
            async for chunk in resp.content.iter_chunked(1 << 16):
                received += len(chunk)
    except aiohttp.ClientError as exc:
        return received, exc
    return received, None


async def test_status_burst_with_retry_after(client: Client) -> None:
    client.emu.faults.add("create", status=429, retry_after=2, times=3)
    answers = [await client.create("ext", "run") for _ in range(4)]
    assert [a.status for a in answers] == [429, 429, 429, 200]
    assert all(a.headers["Retry-After"] == "2" for a in answers[:3])
    assert len(client.emu.store.jobs) == 1  # refused before acting: nothing billed
    assert client.emu.counts["create"] == 4


async def test_bare_500_and_html_502(client: Client) -> None:
    job_id = await client.new_job()
    client.emu.faults.add("get", status=500)
    client.emu.faults.add("get", status=502, html=True)
    first, second, third = [await client.get(job_id) for _ in range(3)]
    assert (first.status, first.body) == (500, b"Internal Server Error")
    assert second.status == 502 and second.headers["Content-Type"].startswith("text/html")
    assert b"<html>" in second.body
    assert third.status == 200


async def test_latency(client: Client) -> None:
    job_id = await client.new_job()
    client.emu.faults.add("get", latency=0.3)
    started = time.monotonic()
    assert (await client.get(job_id)).status == 200
    assert time.monotonic() - started >= 0.3


async def test_download_cut_after(client: Client) -> None:
    job_id, file_id = await _download_job(client)
    url = f"{client.emu.base_url}/jobs/{job_id}/download/{file_id}"
    client.emu.faults.add("download", cut_after=1_000_000)
    received, error = await _received_before_error(client, url)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert received == 1_000_000
    assert await _received_before_error(client, url) == (SIZE, None)  # one-shot


async def test_download_short_body(client: Client) -> None:
    job_id, file_id = await _download_job(client)
    url = f"{client.emu.base_url}/jobs/{job_id}/download/{file_id}"
    client.emu.faults.add("download", short_body=1000)
    received, error = await _received_before_error(client, url)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert received == SIZE - 1000


async def test_json_short_body(client: Client) -> None:
    job_id = await client.new_job()
    client.emu.faults.add("get", short_body=10)
    with pytest.raises(aiohttp.ClientPayloadError):
        await client.get(job_id)


@pytest.mark.parametrize("keep", [0, 40])
async def test_clip_to_answers_a_cut_body_with_a_matching_length(client: Client, keep: int) -> None:
    job_id = await client.new_job()
    whole = (await client.get(job_id)).body
    client.emu.faults.add("get", clip_to=keep)
    clipped = await client.get(job_id)
    assert clipped.status == 200
    assert clipped.headers["Content-Length"] == str(keep)
    assert clipped.body == whole[:keep]  # a whole-looking answer, not a dropped connection
    assert clipped.headers["Content-Type"] == "application/json"


async def test_clip_to_a_create_bills_it(client: Client) -> None:
    client.emu.faults.add("create", clip_to=0)
    answer = await client.create("ext", "run")
    assert (answer.status, answer.body) == (200, b"")
    assert len(client.emu.store.jobs) == 1  # created; its id never reached the client


async def test_a_200_html_page(client: Client) -> None:
    job_id = await client.new_job()
    client.emu.faults.add("get", status=200, html=True)
    answer = await client.get(job_id)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")


async def test_upload_cut_after(client: Client) -> None:
    job_id = await client.new_job()
    answer = await client.finish(
        job_id, {"status": "complete", "result": None, "output_filenames": ["a"]}
    )
    url = answer.json["output_storage_urls"]["a"]
    client.emu.faults.add("upload", cut_after=100_000)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await client.upload(url, "a", b"q" * 20_000_000)
    files = client.emu.job(job_id).output_files or {}
    assert not any(f["uploaded"] for f in files.values())
    assert (await client.upload(url, "a", b"q")).status == 200


async def test_drop_after_handling_bills_the_create(client: Client) -> None:
    client.emu.faults.add("create", drop_after_handling=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.create("ext", "run")
    assert len(client.emu.store.jobs) == 1  # the job exists; the client never heard of it


async def test_hang_until_released(client: Client) -> None:
    job_id = await client.new_job()
    client.emu.faults.add("finish", hang=True)
    pending = asyncio.ensure_future(client.finish(job_id, {"status": "complete", "result": None}))
    while client.emu.faults.hanging == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert not pending.done()
    client.emu.faults.release()
    assert (await pending).status == 200


async def test_hang_at_teardown_closes_unanswered(client: Client) -> None:
    job_id = await client.new_job()
    client.emu.faults.add("get", hang=True)
    pending = asyncio.ensure_future(client.get(job_id))
    while client.emu.faults.hanging == 0:
        await asyncio.sleep(0.01)
    await client.emu.close()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending


async def test_times_after_and_clear(client: Client) -> None:
    job_id = await client.new_job()
    client.emu.faults.add("get", status=503, times=2, after=1)
    statuses = [(await client.get(job_id)).status for _ in range(4)]
    assert statuses == [200, 503, 503, 200]
    client.emu.faults.add("get", status=503, times=None)
    assert (await client.get(job_id)).status == 503
    client.emu.faults.clear()
    assert (await client.get(job_id)).status == 200


def test_probabilistic_faults_are_seeded() -> None:
    def pattern(seed: int) -> list[bool]:
        plan = FaultPlan(seed)
        plan.add("get", status=500, times=None, probability=0.5)
        return [plan.take("get") is not None for _ in range(40)]

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 5 < sum(pattern(7)) < 35


def test_unknown_route_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown route"):
        FaultPlan().add("list", status=500)


async def test_aiohttp_resends_a_cut_put_on_its_own(client: Client) -> None:
    # The trap docs/PROTOCOL.md warns about: a default aiohttp session silently re-sends an
    # idempotent request whose connection dropped, so the fault is hidden from the caller.
    job_id = await client.new_job()
    client.emu.faults.add("complete", drop_after_handling=True)
    async with aiohttp.ClientSession() as default_session:
        retried = Client(client.emu, default_session)
        answer = await retried.complete(job_id)
    assert (answer.status, answer.detail) == (400, "Job already finished")
    assert client.emu.counts["complete"] == 2


async def test_drop_after_handling_a_download(client: Client) -> None:
    job_id, file_id = await _download_job(client)
    client.emu.faults.add("download", drop_after_handling=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.download(job_id, file_id)
    assert (await client.download(job_id, file_id)).status == 200
