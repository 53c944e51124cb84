"""A client hanging up is normal: the emulator logs one DEBUG line, never a traceback; and
``python -m chutes_jobs.emulator`` stops like ``chutes-jobs emulator`` (SIGTERM 0, Ctrl-C 130)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import struct
import sys
from typing import Any

import pytest
from emu_client import Client

MIB = 1 << 20
#: A guard against a hang, never an assertion about speed.
GUARD = 60
HUNG_UP = "client hung up during"


async def send_then_reset(base_url: str, head: str, body: bytes = b"", read: int = 0) -> None:
    """Send a raw request (``head`` without the Host line), read ``read`` bytes of the answer,
    then drop the connection with a TCP reset, as a killed client does."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{head}\r\nHost: {host}\r\n\r\n".encode() + body)
    await writer.drain()
    if read:
        await reader.readexactly(read)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def until_logged(caplog: pytest.LogCaptureFixture, needle: str) -> None:
    async with asyncio.timeout(GUARD):
        while not any(needle in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)


def assert_one_quiet_line(caplog: pytest.LogCaptureFixture, route: str) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
    lines = [r for r in caplog.records if HUNG_UP in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    assert lines[0].getMessage().startswith(f"{HUNG_UP} {route}")
    assert lines[0].exc_info is None and "token=" not in lines[0].getMessage()


async def big_output(client: Client, size: int = 48 * MIB) -> tuple[str, str]:
    job_id = await client.finished_job({"big.bin": bytes(size)})
    (file_id,) = client.emu.job_json(job_id)["output_files"]
    return job_id, file_id


@pytest.mark.parametrize("ranged", [False, True])
async def test_a_dropped_download_is_one_debug_line(
    client: Client, caplog: pytest.LogCaptureFixture, ranged: bool
) -> None:
    job_id, file_id = await big_output(client)
    caplog.set_level(logging.DEBUG)
    range_header = "\r\nRange: bytes=100-" if ranged else ""
    path = f"/jobs/{job_id}/download/{file_id}"
    await send_then_reset(
        client.emu.base_url,
        f"GET {path} HTTP/1.1\r\nAuthorization: {client.emu.api_key}{range_header}",
        read=4096,
    )
    await until_logged(caplog, HUNG_UP)
    assert_one_quiet_line(caplog, f"GET {path}")


async def test_a_dropped_upload_is_one_debug_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = await client.new_job()
    answer = await client.finish(
        job_id, {"status": "complete", "result": {}, "output_filenames": ["a.bin"]}
    )
    upload_url: str = answer.json["output_storage_urls"]["a.bin"]
    caplog.set_level(logging.DEBUG)
    target = upload_url.removeprefix(client.emu.base_url)
    head = (
        f"PUT {target} HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {64 * MIB}"
    )
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    await send_then_reset(client.emu.base_url, head, part + bytes(MIB))
    await until_logged(caplog, HUNG_UP)
    assert_one_quiet_line(caplog, f"PUT /jobs/{job_id}/upload")


async def test_a_dropped_json_body_is_one_debug_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    head = (
        f"POST /jobs/demo/echo HTTP/1.1\r\nAuthorization: {client.emu.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {4 * MIB}"
    )
    await send_then_reset(client.emu.base_url, head, b'{"a": "' + b"x" * 1000)
    await until_logged(caplog, HUNG_UP)
    assert_one_quiet_line(caplog, "POST /jobs/demo/echo")


# -- python -m chutes_jobs.emulator -------------------------------------------------------


async def start_module_emulator() -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chutes_jobs.emulator", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(GUARD):
        first = (await process.stdout.readline()).decode()
        key = (await process.stdout.readline()).decode().split("API key: ")[1].strip()
    return process, {"base_url": first.split(" at ")[1].strip(), "api_key": key}


async def stop(process: asyncio.subprocess.Process, sig: int) -> tuple[int, str]:
    process.send_signal(sig)
    async with asyncio.timeout(GUARD):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.parametrize(
    ("sig", "code", "said"), [(signal.SIGTERM, 0, ""), (signal.SIGINT, 130, "emulator stopped\n")]
)
async def test_module_emulator_stops_like_the_command(sig: int, code: int, said: str) -> None:
    process, _ = await start_module_emulator()
    try:
        assert await stop(process, sig) == (code, said)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_module_emulator_stays_quiet_when_clients_hang_up() -> None:
    process, info = await start_module_emulator()
    try:
        auth = f"Authorization: {info['api_key']}"
        body = json.dumps({"sizes": [48 * MIB]}).encode()
        reader, writer = await asyncio.open_connection(*info["base_url"][7:].split(":"))
        writer.write(f"POST /jobs/demo/files HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)  # fmt: skip
        answer = await asyncio.wait_for(reader.read(), GUARD)
        writer.close()
        job_id = json.loads(answer.split(b"\r\n\r\n", 1)[1])["job_id"]
        file_id = await until_uploaded(info, job_id)
        for _ in range(3):
            await send_then_reset(
                info["base_url"], f"GET /jobs/{job_id}/download/{file_id} HTTP/1.1\r\n{auth}",
                read=4096,
            )  # fmt: skip
        await asyncio.sleep(0.5)  # let the emulator meet the resets before it is stopped
        assert await stop(process, signal.SIGTERM) == (0, "")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def until_uploaded(info: dict[str, Any], job_id: str) -> str:
    """The file id of the job's output once the local run has uploaded it."""
    import aiohttp

    async with aiohttp.ClientSession() as http, asyncio.timeout(GUARD):
        while True:
            url = f"{info['base_url']}/jobs/{job_id}"
            async with http.get(url, headers={"Authorization": info["api_key"]}) as resp:
                job = await resp.json()
            files = [f for f, v in (job.get("output_files") or {}).items() if v["uploaded"]]
            if job.get("finished_at") and files:
                return str(files[0])
            await asyncio.sleep(0.05)
