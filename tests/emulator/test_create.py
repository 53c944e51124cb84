"""Create and the Job JSON: chute lookup, ``_disk_gb``, the live shape of the object."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import aiohttp
from emu_client import Client

from chutes_jobs.emulator import Emulator

NAIVE_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$")


async def test_unknown_chute_or_method_is_404(client: Client) -> None:
    for chute, method in [("nochute", "echo"), ("demo", "nomethod")]:
        answer = await client.create(chute, method)
        assert (answer.status, answer.detail) == (404, f"Chute {chute} not found")


async def test_chute_by_id_or_name(client: Client) -> None:
    by_id = await client.create(client.emu.demo_chute_id or "", "echo", {"a": 1})
    by_name = await client.create("demo", "echo", {"a": 1})
    assert by_id.json["chute_id"] == by_name.json["chute_id"] == client.emu.demo_chute_id


async def test_created_job_has_the_live_shape(client: Client) -> None:
    answer = await client.create("ext", "run", {"b": 2, "a": 1})
    assert answer.status == 200
    job = answer.json
    assert "status" not in job and "error_detail" not in job
    assert job["finished_at"] is None and job["instance"] is None and job["instance_id"] is None
    assert job["output_files"] is None and job["output_storage_urls"] == {}
    assert job["host"] is None
    assert job["job_args"] == {"a": 1, "b": 2, "_disk_gb": 10}
    assert NAIVE_ISO.match(job["created_at"])
    created = datetime.fromisoformat(job["created_at"]).replace(tzinfo=UTC)  # naive, in UTC
    assert abs(created - datetime.now(UTC)).total_seconds() < 5
    assert job["chute"]["name"] == "ext" and set(job["chute"]["image"]) >= {"image_id", "tag"}
    fetched = await client.get(job["job_id"])
    assert fetched.json["job_id"] == job["job_id"]


async def test_disk_gb_rules(client: Client) -> None:
    accepted: dict[float | None, int] = {None: 10, 11: 11, 999: 999, 10.7: 10, 500.9: 500}
    for value, stored in accepted.items():
        answer = await client.create("ext", "run", {"_disk_gb": value})
        assert answer.status == 200, value
        assert answer.json["job_args"]["_disk_gb"] == stored
    refused: dict[object, str] = {
        10: "10",
        1000: "1000",
        True: "True",
        "20": "20",
        0: "0",
        -5: "-5",
    }
    for bad, text in refused.items():
        answer = await client.create("ext", "run", {"_disk_gb": bad})
        assert (answer.status, answer.detail) == (400, f"Invalid disk size specified: {text}")


async def test_body_must_be_a_json_object(client: Client) -> None:
    for body in (b"", b"not json", b"[1]", b'"x"'):
        answer = await client.call("POST", "/jobs/ext/run", data=body, headers=client.auth())
        assert (answer.status, answer.body) == (500, b"Internal Server Error")


async def test_every_create_is_a_new_job(client: Client) -> None:
    ids = {(await client.create("ext", "run", {"same": 1})).json["job_id"] for _ in range(3)}
    assert len(ids) == 3
    assert client.emu.counts["create"] == 3


async def test_expose_status_adds_status_and_error_detail(http: aiohttp.ClientSession) -> None:
    async with Emulator(expose_status=True) as emu:
        emu.add_chute("ext", {"run": None})
        job = (await Client(emu, http).create("ext", "run")).json
        assert job["status"] == "pending" and job["error_detail"] is None
