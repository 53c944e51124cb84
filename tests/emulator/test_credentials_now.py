"""The emulator speaks the API as the live server does now: OAuth access tokens (``cak_``) with
scopes and a 403 for a missing one; hotkey auth only with all three headers; ES256 tokens."""

from __future__ import annotations

import hashlib
import time

import aiohttp
import jwt
import pytest
from bittensor_wallet import Keypair
from emu_client import Client

from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator.auth import SCOPE_READ, SCOPE_WRITE

NO_PERMISSION = "Token does not have permission for this resource"
SEED = "0x" + "22" * 32


async def test_an_oauth_token_works_wherever_an_api_key_does(client: Client) -> None:
    token = client.emu.add_oauth_token()
    assert token.startswith("cak_")
    for header in (token, f"Bearer {token}"):
        created = await client.create("demo", "echo", headers={"Authorization": header})
        assert created.status == 200, created.body
        job_id = created.json["job_id"]
        assert created.json["user_id"] == client.emu.user.user_id
        assert (await client.get(job_id, headers={"Authorization": header})).status == 200
        gone = await client.call("DELETE", f"/jobs/{job_id}", headers={"Authorization": header})
        assert gone.status == 200


async def test_a_token_without_the_scope_answers_403(client: Client) -> None:
    read_only = {"Authorization": client.emu.add_oauth_token([SCOPE_READ])}
    write_only = {"Authorization": client.emu.add_oauth_token([SCOPE_WRITE])}
    job_id = await client.new_job()
    refused = await client.create("demo", "echo", headers=read_only)
    assert (refused.status, refused.detail) == (403, NO_PERMISSION)
    assert (await client.get(job_id, headers=read_only)).status == 200
    answer = await client.get(job_id, headers=write_only)
    assert (answer.status, answer.detail) == (403, NO_PERMISSION)
    delete = await client.call("DELETE", f"/jobs/{job_id}", headers=read_only)
    assert (delete.status, delete.detail) == (403, NO_PERMISSION)
    assert (await client.get(job_id)).status == 200  # nothing was deleted


async def test_an_unknown_oauth_token_is_401(client: Client) -> None:
    answer = await client.create("demo", "echo", headers={"Authorization": "cak_" + "x" * 43})
    assert (answer.status, answer.detail) == (401, "Invalid token or user not found")


async def test_partial_hotkey_headers_are_ignored_for_the_api_key(client: Client) -> None:
    """Hotkey auth needs hotkey, signature and nonce; with one missing the three are ignored
    and the API key decides (before, hotkey + signature alone answered 401 Invalid nonce)."""
    keypair = Keypair.create_from_seed(SEED)  # type: ignore[arg-type]
    client.emu.add_user(hotkey=keypair.ss58_address)
    body = b'{"x": 1}'
    nonce = str(int(time.time()))
    message = f"{keypair.ss58_address}:{nonce}:{hashlib.sha256(body).hexdigest()}"
    full = {
        "X-Chutes-Hotkey": keypair.ss58_address,
        "X-Chutes-Signature": "ab" * 64,  # wrong: refused only when hotkey auth is chosen
        "X-Chutes-Nonce": nonce,
        "Content-Type": "application/json",
    }
    for missing in ("X-Chutes-Hotkey", "X-Chutes-Signature", "X-Chutes-Nonce"):
        partial = {k: v for k, v in full.items() if k != missing}
        with_key = await client.call(
            "POST", "/jobs/demo/echo", data=body, headers={**partial, **client.auth()}
        )
        assert with_key.status == 200, (missing, with_key.body)
        assert with_key.json["user_id"] == client.emu.user.user_id  # the API key's user
        without = await client.call("POST", "/jobs/demo/echo", data=body, headers=partial)
        assert (without.status, without.detail) == (
            401,
            "Can't find a user with that api key in our db :(",
        )
    # All three present: hotkey auth wins over the API key, and the bad signature is refused.
    signed = await client.call(
        "POST", "/jobs/demo/echo", data=body, headers={**full, **client.auth()}
    )
    assert signed.status == 401 and signed.detail.startswith("Invalid request signature")
    good = {**full, "X-Chutes-Signature": keypair.sign(message).hex()}
    assert (await client.call("POST", "/jobs/demo/echo", data=body, headers=good)).status == 200


@pytest.mark.parametrize("algorithm", ["HS256", "ES256"])
async def test_worker_tokens_of_either_algorithm_work(
    http: aiohttp.ClientSession, algorithm: str
) -> None:
    async with Emulator(token_algorithm=algorithm, schedule_delay=0.01) as emu:
        emu.add_chute("ext", {"run": None})
        client = Client(emu, http)
        job_id = await client.new_job()
        url = emu.job_status_url(job_id)
        token = url.split("token=", 1)[1]
        assert jwt.get_unverified_header(token)["alg"] == algorithm
        finish = await client.call("POST", url, json={"status": "complete", "result": {}})
        assert finish.status == 200, finish.body
        complete = await client.call("PUT", url, json={"status": "done"})
        assert complete.status == 200 and complete.json["finished_at"] is not None
