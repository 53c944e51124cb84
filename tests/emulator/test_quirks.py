"""``live_quirks=True``: the live server's bugs, exactly as docs/PROTOCOL.md describes them."""

from __future__ import annotations

import uuid

from emu_client import Client

BARE_500 = (500, b"Internal Server Error")


async def test_delete_answers_500_and_keeps_the_job(quirky_client: Client) -> None:
    client = quirky_client
    job_id = await client.finished_job({"a": b"x"})
    file_id = str(uuid.uuid5(uuid.UUID(job_id), "a"))
    assert (await client.download(job_id, file_id)).status == 200
    for _ in range(2):
        answer = await client.call("DELETE", f"/jobs/{job_id}", headers=client.auth())
        assert (answer.status, answer.body) == BARE_500
    assert (await client.get(job_id)).status == 200  # the row survived
    gone = await client.download(job_id, file_id)  # ...but its files did not
    assert (gone.status, gone.body) == BARE_500


async def test_delete_stops_the_worker(quirky_client: Client) -> None:
    client = quirky_client
    job_id = (await client.create("demo", "sleep", {"seconds": 30})).json["job_id"]
    while client.emu.job(job_id).instance is None:
        await client.get(job_id)
    await client.call("DELETE", f"/jobs/{job_id}", headers=client.auth())
    await client.emu.wait_job(job_id)  # returns at once: the run was cancelled
    assert client.emu.job(job_id).finished_at is None


async def test_non_object_result_poisons_the_job(quirky_client: Client) -> None:
    client = quirky_client
    job_id = await client.new_job()
    answer = await client.finish(job_id, {"status": "complete", "result": ["a"]})
    assert (answer.status, answer.body) == BARE_500
    assert client.emu.job(job_id).result == ["a"]  # stored anyway
    got = await client.get(job_id)
    assert (got.status, got.body) == BARE_500
    done = await client.complete(job_id)
    assert (done.status, done.body) == BARE_500


async def test_missing_result_is_stored_as_error_string(quirky_client: Client) -> None:
    client = quirky_client
    job_id = await client.new_job()
    answer = await client.finish(job_id, {"status": "complete"})
    assert (answer.status, answer.body) == BARE_500
    assert client.emu.job(job_id).result == "error"
    assert (await client.get(job_id)).status == 500


async def test_complete_crashes_on_failed_job_without_detail(quirky_client: Client) -> None:
    client = quirky_client
    job_id = await client.new_job()
    await client.finish(job_id, {"status": "error", "result": None, "output_filenames": ["x"]})
    for _ in range(2):
        answer = await client.complete(job_id)
        assert (answer.status, answer.body) == BARE_500
    assert client.emu.job(job_id).finished_at is None


async def test_no_range_support(quirky_client: Client) -> None:
    client = quirky_client
    job_id = await client.finished_job({"a": b"0123456789"})
    file_id = str(uuid.uuid5(uuid.UUID(job_id), "a"))
    answer = await client.download(job_id, file_id, headers={"Range": "bytes=4-"})
    assert answer.status == 200 and answer.body == b"0123456789"
    assert "Accept-Ranges" not in answer.headers
