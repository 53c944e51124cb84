"""Hotkey (sr25519) auth end to end: the emulator verifies what ChutesSession signs."""

from __future__ import annotations

import pytest
from bittensor_wallet import Keypair

from chutes_jobs import AuthenticationError, ChutesSession, ConfigurationError, NotFoundError
from chutes_jobs.emulator import Emulator

SEED = "0x" + "5a" * 32


@pytest.fixture
def ss58() -> str:
    return Keypair.create_from_seed(SEED).ss58_address


async def test_hotkey_only_session_creates_a_job_as_its_user(
    chutes_emulator: Emulator, ss58: str
) -> None:
    user = chutes_emulator.add_user(username="signer", hotkey=ss58)
    async with ChutesSession(base_url=chutes_emulator.base_url, hotkey=SEED) as signer:
        handle = await signer.create_job("demo", "echo", {"x": 1})
        with pytest.raises(ConfigurationError, match="hotkey"):
            await handle.refresh()  # a signed GET is refused before sending
    assert chutes_emulator.job(handle.id).user_id == user.user_id
    assert chutes_emulator.counts["get"] == 0


async def test_key_and_hotkey_session_signs_creates_and_reads_with_the_key(
    chutes_emulator: Emulator, ss58: str
) -> None:
    """The hotkey belongs to one user and the key to another: who owns the job tells which
    credential each call used (the server prefers a signature when both are sent)."""
    signer = chutes_emulator.add_user(username="signer", hotkey=ss58)
    async with ChutesSession(
        base_url=chutes_emulator.base_url, api_key=chutes_emulator.api_key, hotkey=SEED
    ) as session:
        handle = await session.create_job("demo", "echo", {"x": 2})
        assert chutes_emulator.job(handle.id).user_id == signer.user_id
        with pytest.raises(NotFoundError):  # read with the key, as the other user
            await handle.refresh()


async def test_unregistered_hotkey_is_refused_by_the_server(chutes_emulator: Emulator) -> None:
    async with ChutesSession(base_url=chutes_emulator.base_url, hotkey=SEED) as stranger:
        with pytest.raises(AuthenticationError, match="Could not find user with hotkey"):
            await stranger.create_job("demo", "echo")
    assert chutes_emulator.counts["create"] == 1


async def test_submit_many_creates_signed_by_the_hotkey(
    chutes_emulator: Emulator, ss58: str
) -> None:
    """submit_many's creates go over the HTTP/1.1 pool: the emulator verifies each signature."""
    user = chutes_emulator.add_user(username="signer", hotkey=ss58)
    async with ChutesSession(base_url=chutes_emulator.base_url, hotkey=SEED) as signer:
        inputs = ({"i": i} for i in range(20))
        results = [r async for r in signer.submit_many("demo", "echo", inputs, concurrency=4)]
    assert sorted(r.index for r in results if r.ok) == list(range(20))
    owners = {chutes_emulator.job(r.job_id).user_id for r in results if r.job_id}
    assert owners == {user.user_id}
    assert chutes_emulator.counts["create"] == 20
