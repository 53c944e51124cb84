"""The pytest plugin and the ``python -m chutes_jobs.emulator`` entry point."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp

from chutes_jobs.emulator import Emulator


async def test_fixture_serves_a_fresh_emulator(chutes_emulator: Emulator) -> None:
    assert chutes_emulator.base_url.startswith("http://127.0.0.1:")
    assert not chutes_emulator.base_url.endswith("/")
    headers = {"Authorization": chutes_emulator.api_key}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{chutes_emulator.base_url}/jobs/demo/echo", json={}, headers=headers) as r,
    ):
        assert r.status == 200
    assert chutes_emulator.counts["create"] == 1


def test_plugin_imports_without_bittensor_or_the_emulator() -> None:
    code = (
        "import sys; sys.modules['bittensor_wallet'] = None\n"
        "import chutes_jobs.testing\n"
        "assert 'chutes_jobs.emulator' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_module_entry_point_serves(tmp_path: object) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chutes_jobs.emulator", "--port", "0", "--no-range",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        key = (await proc.stdout.readline()).decode().split("API key: ")[1].strip()
        base_url = first.split(" at ")[1].strip()
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base_url}/jobs/demo/echo", json={}, headers={"Authorization": key}) as r,
        ):
            assert r.status == 200
    finally:
        proc.terminate()
        await proc.wait()
