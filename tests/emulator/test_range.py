"""Range downloads (an emulator extension; the live server always answers 200)."""

from __future__ import annotations

import uuid

import aiohttp
from emu_client import Client

from chutes_jobs.emulator import Emulator

DATA = bytes(range(256)) * 4  # 1024 bytes


async def _job(client: Client) -> tuple[str, str]:
    job_id = await client.finished_job({"f.bin": DATA})
    return job_id, str(uuid.uuid5(uuid.UUID(job_id), "f.bin"))


async def test_ranges_answer_206(client: Client) -> None:
    job_id, file_id = await _job(client)
    cases = {
        "bytes=1000-": (1000, 1023),
        "bytes=10-19": (10, 19),
        "bytes=1000-5000": (1000, 1023),
        "bytes=-24": (1000, 1023),
    }
    for header, (first, last) in cases.items():
        answer = await client.download(job_id, file_id, headers={"Range": header})
        assert answer.status == 206, header
        assert answer.body == DATA[first : last + 1]
        assert answer.headers["Content-Range"] == f"bytes {first}-{last}/1024"
        assert answer.headers["Content-Length"] == str(last - first + 1)
        assert answer.headers["Accept-Ranges"] == "bytes"
        assert answer.headers["Content-Disposition"] == 'attachment; filename="f.bin"'
    assert client.emu.requests[-1].headers["Range"] == "bytes=-24"


async def test_full_download_advertises_ranges(client: Client) -> None:
    job_id, file_id = await _job(client)
    answer = await client.download(job_id, file_id)
    assert answer.status == 200 and answer.body == DATA
    assert answer.headers["Accept-Ranges"] == "bytes"


async def test_unsatisfiable_range_is_416(client: Client) -> None:
    job_id, file_id = await _job(client)
    for header in ("bytes=1024-", "bytes=5000-6000"):
        answer = await client.download(job_id, file_id, headers={"Range": header})
        assert answer.status == 416
        assert answer.headers["Content-Range"] == "bytes */1024"


async def test_malformed_or_multiple_ranges_get_everything(client: Client) -> None:
    job_id, file_id = await _job(client)
    for header in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3"):
        answer = await client.download(job_id, file_id, headers={"Range": header})
        assert (answer.status, answer.body) == (200, DATA)


async def test_range_support_off(http: aiohttp.ClientSession) -> None:
    async with Emulator(range_support=False) as emu:
        emu.add_chute("ext", {"run": None})
        client = Client(emu, http)
        job_id, file_id = await _job(client)
        answer = await client.download(job_id, file_id, headers={"Range": "bytes=10-"})
        assert (answer.status, answer.body) == (200, DATA)
        assert "Accept-Ranges" not in answer.headers and "Content-Range" not in answer.headers
