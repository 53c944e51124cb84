"""Fixtures of the emulator's contract tests (the client lives in ``emu_client``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from chutes_jobs.emulator import Emulator

# The suite runs with --import-mode=importlib, where test modules cannot import their
# neighbours: put this folder on the path so they can share the `emu_client` helper.
sys.path.insert(0, str(Path(__file__).parent))
from emu_client import Client


async def _emulator(**options: Any) -> Emulator:
    emu = Emulator(schedule_delay=0.01, **options)
    await emu.start()
    emu.add_chute("ext", {"run": None})  # jobs left to the test acting as the worker
    return emu


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    emulator = await _emulator()
    yield emulator
    await emulator.close()


@pytest_asyncio.fixture
async def quirky() -> AsyncIterator[Emulator]:
    emulator = await _emulator(live_quirks=True)
    yield emulator
    await emulator.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # aiohttp re-sends an idempotent request once, on its own, when its connection drops: that
    # would hide what a fault did. `_retry_connection` is aiohttp's (private) switch for it.
    async with aiohttp.ClientSession() as session:
        session._retry_connection = False
        yield session


@pytest.fixture
def client(emu: Emulator, http: aiohttp.ClientSession) -> Client:
    return Client(emu, http)


@pytest.fixture
def quirky_client(quirky: Emulator, http: aiohttp.ClientSession) -> Client:
    return Client(quirky, http)
