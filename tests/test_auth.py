"""API-key and hotkey authentication, and which credential a request uses."""

from __future__ import annotations

import hashlib
import sys

import pytest
from bittensor_wallet import Keypair

from chutes_jobs import ChutesSession, ConfigurationError
from chutes_jobs.auth import (
    ApiKeyAuth,
    HotkeyAuth,
    UserAuth,
    load_keypair,
    signature_message,
)

API_KEY = "cpk_0f1e2d3c4b5a69788796a5b4c3d2e1f0.5c7d9e1f2a3b4c5d6e7f8091a2b3c4d5"
SEED = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
BODY = b'{"prompt":"a red fox","_disk_gb":20}'


@pytest.fixture
def keypair() -> Keypair:
    return Keypair.create_from_seed(SEED)


def test_api_key_header_is_the_key_as_given() -> None:
    assert ApiKeyAuth(API_KEY).headers() == {"Authorization": API_KEY}
    assert ApiKeyAuth(f"Bearer {API_KEY}").headers() == {"Authorization": f"Bearer {API_KEY}"}


def test_hotkey_headers_sign_the_body_with_the_current_second(keypair: Keypair) -> None:
    auth = HotkeyAuth(keypair, clock=lambda: 1_760_000_000.9)
    headers = auth.headers(BODY)
    assert headers["X-Chutes-Hotkey"] == keypair.ss58_address
    assert headers["X-Chutes-Nonce"] == "1760000000"
    message = f"{keypair.ss58_address}:1760000000:{hashlib.sha256(BODY).hexdigest()}"
    verifier = Keypair(ss58_address=keypair.ss58_address)
    assert verifier.verify(message, bytes.fromhex(headers["X-Chutes-Signature"]))
    other_nonce = message.replace(":1760000000:", ":1760000001:")
    assert not verifier.verify(other_nonce, bytes.fromhex(headers["X-Chutes-Signature"]))


def test_signature_message_format() -> None:
    assert signature_message("5Abc", "17", b"") == (
        "5Abc:17:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_seed_with_or_without_0x_gives_the_same_hotkey(keypair: Keypair) -> None:
    assert load_keypair(SEED).ss58_address == keypair.ss58_address
    assert load_keypair(f"0x{SEED}").ss58_address == keypair.ss58_address


def test_a_keypair_object_is_used_as_is(keypair: Keypair) -> None:
    assert load_keypair(keypair) is keypair
    session = ChutesSession(hotkey=keypair)
    assert session.auth_kind == "hotkey"


@pytest.mark.parametrize(
    ("seed", "problem"),
    [
        (SEED[:-2], "64 hex characters, got 62"),
        (SEED + "00", "64 hex characters, got 66"),
        ("z" + SEED[1:], "non-hex"),
        ("", "got 0"),
    ],
)
def test_bad_seed_is_a_configuration_error_that_never_echoes_it(seed: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as info:
        ChutesSession(hotkey=seed)
    if seed:
        assert seed[4:20] not in str(info.value)


def test_something_that_is_not_a_keypair_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="keypair"):
        load_keypair(12345)  # type: ignore[arg-type]


def test_missing_bittensor_wallet_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bittensor_wallet", None)  # makes the import fail
    with pytest.raises(ConfigurationError) as info:
        ChutesSession(hotkey=SEED)
    assert "pip install 'chutes-jobs[hotkey]'" in str(info.value)


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("POST", BODY, "X-Chutes-Signature"),
        ("PUT", BODY, "X-Chutes-Signature"),
        ("GET", None, "Authorization"),
        ("DELETE", None, "Authorization"),
        ("POST", None, "Authorization"),  # nothing to sign
        ("POST", b"", "Authorization"),
    ],
)
def test_both_credentials_sign_bodies_and_key_everything_else(
    keypair: Keypair, method: str, body: bytes | None, expected: str
) -> None:
    auth = UserAuth(api_key=ApiKeyAuth(API_KEY), hotkey=HotkeyAuth(keypair))
    headers = auth.headers(method, body)
    assert expected in headers
    assert len({"Authorization", "X-Chutes-Signature"} & set(headers)) == 1


@pytest.mark.parametrize(("method", "body"), [("GET", None), ("DELETE", None), ("POST", None)])
def test_hotkey_alone_cannot_authenticate_calls_without_a_body(
    keypair: Keypair, method: str, body: bytes | None
) -> None:
    auth = UserAuth(hotkey=HotkeyAuth(keypair))
    with pytest.raises(ConfigurationError, match="needs an API key"):
        auth.check(method, body)


def test_no_credentials_at_all_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="needs user credentials"):
        UserAuth().headers("GET", None)


def test_check_does_not_sign(keypair: Keypair) -> None:
    signed: list[bytes] = []

    class Recording:
        ss58_address = keypair.ss58_address

        def sign(self, data: bytes) -> bytes:
            signed.append(data)
            return keypair.sign(data)

    auth = UserAuth(hotkey=HotkeyAuth(Recording()))
    auth.check("POST", BODY)
    assert signed == []
    auth.headers("POST", BODY)
    assert len(signed) == 1


def test_auth_kind_names_the_credentials(keypair: Keypair) -> None:
    assert UserAuth().kind == "none"
    assert UserAuth(api_key=ApiKeyAuth(API_KEY)).kind == "api_key"
    assert UserAuth(hotkey=HotkeyAuth(keypair)).kind == "hotkey"
    both = UserAuth(api_key=ApiKeyAuth(API_KEY), hotkey=HotkeyAuth(keypair))
    assert both.kind == "api_key+hotkey"


def test_auth_reprs_hold_no_secret(keypair: Keypair) -> None:
    both = UserAuth(api_key=ApiKeyAuth(API_KEY), hotkey=HotkeyAuth(keypair))
    text = repr(both)
    assert API_KEY not in text and SEED not in text
    assert keypair.ss58_address in text  # the public address is fine to show
