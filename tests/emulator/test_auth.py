"""User authentication: API keys, hotkey signatures, ownership of jobs and chutes."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import aiohttp
import pytest
from bittensor_wallet import Keypair
from emu_client import Client

from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.store import new_api_key

SEED = "0x" + "11" * 32


async def test_api_key_texts(client: Client) -> None:
    cases = [
        ({}, "Can't find a user with that api key in our db :("),
        ({"Authorization": ""}, "Can't find a user with that api key in our db :("),
        ({"Authorization": "cpk_short"}, "Missing or invalid authorization header(s)"),
        ({"Authorization": new_api_key(str(uuid.uuid4()))}, "Invalid token or user not found"),
        ({"Authorization": "Bearer eyJhbGciOi.jwt.x"}, "Invalid token."),
    ]
    for headers, text in cases:
        answer = await client.create("demo", "echo", headers=headers)
        assert (answer.status, answer.detail) == (401, text), headers


async def test_bearer_prefix_and_last_word_are_accepted(client: Client) -> None:
    for header in (f"Bearer {client.emu.api_key}", f"anything {client.emu.api_key}"):
        answer = await client.create("demo", "echo", headers={"Authorization": header})
        assert answer.status == 200


async def test_jobs_belong_to_their_user(client: Client) -> None:
    other = client.emu.add_user()
    job_id = await client.new_job()
    answer = await client.get(job_id, headers=client.auth(other.api_key))
    assert (answer.status, answer.detail) == (404, "Job not found, or does not belong to you")
    answer = await client.call("DELETE", f"/jobs/{job_id}", headers=client.auth(other.api_key))
    assert answer.detail == f"Job {job_id} not found or does not belong to you"
    assert (await client.get(job_id)).status == 200


async def test_private_chute_is_not_found_for_others(client: Client) -> None:
    emu = client.emu
    stranger, friend = emu.add_user(), emu.add_user()
    chute_id = emu.add_chute("secret", {"run": None}, public=False, shared_with=[friend])
    answer = await client.create(chute_id, "run", headers=client.auth(stranger.api_key))
    assert (answer.status, answer.detail) == (404, f"Chute {chute_id} not found")
    assert (await client.create(chute_id, "run", headers=client.auth(friend.api_key))).status == 200
    assert (await client.create("secret", "run")).status == 200  # the owner, by name


def _signed(keypair: Keypair, body: bytes, nonce: int | None = None) -> dict[str, str]:
    nonce = int(time.time()) if nonce is None else nonce
    message = f"{keypair.ss58_address}:{nonce}:{hashlib.sha256(body).hexdigest()}"
    return {
        "X-Chutes-Hotkey": keypair.ss58_address,
        "X-Chutes-Nonce": str(nonce),
        "X-Chutes-Signature": keypair.sign(message).hex(),
        "Content-Type": "application/json",
    }


@pytest.fixture
def keypair() -> Keypair:
    # bittensor-wallet 4.x takes the hex string (its type stub still says bytes).
    return Keypair.create_from_seed(SEED)  # type: ignore[arg-type]


async def test_hotkey_signed_create(client: Client, keypair: Keypair) -> None:
    user = client.emu.add_user(hotkey=keypair.ss58_address)
    body = json.dumps({"x": 1}).encode()
    answer = await client.call("POST", "/jobs/demo/echo", data=body, headers=_signed(keypair, body))
    assert answer.status == 200, answer.body
    assert answer.json["user_id"] == user.user_id
    # The signature wins over a (wrong) API key sent along.
    headers = {**_signed(keypair, body), "Authorization": "cpk_bad"}
    assert (await client.call("POST", "/jobs/demo/echo", data=body, headers=headers)).status == 200


async def test_hotkey_failures(client: Client, keypair: Keypair) -> None:
    hotkey = keypair.ss58_address
    body = b"{}"
    old = _signed(keypair, body, nonce=int(time.time()) - 700)
    tampered = _signed(keypair, b'{"other": 1}')
    expectations = [
        (old, "Invalid nonce!"),
        ({**_signed(keypair, body), "X-Chutes-Nonce": "abc"}, "Invalid nonce!"),
        (tampered, None),
        (_signed(keypair, body), f"Could not find user with hotkey: {hotkey}"),
    ]
    for headers, text in expectations:
        answer = await client.call("POST", "/jobs/demo/echo", data=body, headers=headers)
        assert answer.status == 401
        if text is None:
            assert answer.detail.startswith(f"Invalid request signature for hotkey {hotkey}")
        else:
            assert answer.detail == text


async def test_signed_get_and_delete_are_refused(client: Client, keypair: Keypair) -> None:
    client.emu.add_user(hotkey=keypair.ss58_address)
    job_id = await client.new_job()
    for method in ("GET", "DELETE"):
        answer = await client.call(method, f"/jobs/{job_id}", headers=_signed(keypair, b""))
        assert answer.status == 401
        assert answer.detail == "Either payload_str or purpose must be provided"


async def test_daily_quota_is_429_without_retry_after(http: aiohttp.ClientSession) -> None:
    async with Emulator(daily_quota=2, demo_chute=True) as emu:
        client = Client(emu, http)
        assert (await client.create("demo", "echo")).status == 200
        assert (await client.create("demo", "sleep", {"seconds": 0})).status == 200
        answer = await client.create("demo", "echo")
        assert answer.status == 429
        assert answer.detail.startswith("Daily job quota exceeded: chute_job_count=2")
        assert "Retry-After" not in answer.headers
        # Quota is checked before the body: a broken body still gets the 429.
        bad = await client.call("POST", "/jobs/demo/echo", data=b"[", headers=client.auth())
        assert bad.status == 429
        # ...but after the chute check.
        assert (await client.create("nochute", "echo")).status == 404
