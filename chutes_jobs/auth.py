"""User authentication: an API key header, or a Bittensor hotkey signature over the body.

The server accepts either (``docs/PROTOCOL.md``, "Authenticating a user"):

* ``Authorization: cpk_...`` (an API key) or ``Authorization: cak_...`` (an OAuth access
  token, answered 403 where it lacks the scope), sent as given; the server reads the last
  word, so ``Bearer cpk_...`` works too;
* ``X-Chutes-Hotkey`` / ``X-Chutes-Nonce`` / ``X-Chutes-Signature``, the sr25519 signature of
  ``"{ss58}:{nonce}:{sha256_hex(body)}"`` over the exact body bytes sent. The server uses it
  only when all three headers are present (else it ignores them and reads the API key), so
  this module always sends all three together.

The server only hashes POST/PUT/PATCH bodies, so a signed GET or DELETE is always refused: hotkey
signing is used for calls with a body (create), and reads, deletes and downloads need an API
key. ``bittensor-wallet`` is imported only when a hotkey seed is given (extra ``hotkey``).
"""

from __future__ import annotations

import hashlib
import importlib
import string
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

from ._redact import REDACTED, register_secret
from .errors import ConfigurationError

__all__ = ["ApiKeyAuth", "HotkeyAuth", "SigningKeypair", "UserAuth", "load_keypair"]

_SIGNABLE_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SEED_HEX_CHARS = 64
_INSTALL_HINT = "pip install 'chutes-jobs[hotkey]'"


@runtime_checkable
class SigningKeypair(Protocol):
    """What hotkey signing needs of a keypair (``bittensor_wallet.Keypair`` fits)."""

    @property
    def ss58_address(self) -> str:
        """The public ss58 address sent as ``X-Chutes-Hotkey``."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The sr25519 signature of ``data``."""
        ...


def load_keypair(hotkey: str | SigningKeypair) -> SigningKeypair:
    """A signing keypair from a 64-hex-character seed (``0x`` prefix allowed) or a keypair.

    Raises :class:`~chutes_jobs.ConfigurationError` for a malformed seed or when
    ``bittensor-wallet`` is not installed.
    """
    if not isinstance(hotkey, str):
        if not isinstance(hotkey, SigningKeypair):
            raise ConfigurationError(
                "hotkey must be a 64-hex-character seed or a keypair with ss58_address and sign()"
            )
        return hotkey
    register_secret(hotkey)
    seed = _normalized_seed(hotkey)
    register_secret(seed)
    try:
        wallet = importlib.import_module("bittensor_wallet")
    except ImportError as exc:
        raise ConfigurationError(f"hotkey signing needs bittensor-wallet: {_INSTALL_HINT}") from exc
    keypair: SigningKeypair = wallet.Keypair.create_from_seed(seed)
    return keypair


def _normalized_seed(seed: str) -> str:
    seed = seed.strip().removeprefix("0x")
    # Never echo the seed in an error: it is the private key.
    if len(seed) != _SEED_HEX_CHARS:
        raise ConfigurationError(
            f"hotkey seed must be {_SEED_HEX_CHARS} hex characters, got {len(seed)} characters"
        )
    if not all(c in string.hexdigits for c in seed):
        raise ConfigurationError("hotkey seed must be hex: it contains non-hex characters")
    return seed


def signature_message(ss58_address: str, nonce: str, body: bytes) -> str:
    """The text the server verifies: ``"{hotkey}:{nonce}:{sha256_hex(body)}"``."""
    return f"{ss58_address}:{nonce}:{hashlib.sha256(body).hexdigest()}"


@attrs.frozen
class ApiKeyAuth:
    """An API key (``cpk_...``) or OAuth access token (``cak_...``), sent as given in the
    ``Authorization`` header; registered for redaction by value, whatever its shape."""

    key: str = attrs.field(repr=lambda _: REDACTED)

    def __attrs_post_init__(self) -> None:
        register_secret(self.key)

    def headers(self) -> dict[str, str]:
        """The header that authenticates one request."""
        return {"Authorization": self.key}


@attrs.frozen
class HotkeyAuth:
    """Signs request bodies with a Bittensor hotkey (sr25519); ``clock`` gives the nonce."""

    keypair: SigningKeypair = attrs.field(repr=False)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)

    @property
    def ss58_address(self) -> str:
        """The hotkey's public address."""
        return self.keypair.ss58_address

    def headers(self, body: bytes) -> dict[str, str]:
        """Headers that sign exactly ``body`` with a fresh nonce (current unix second)."""
        nonce = str(int(self.clock()))
        message = signature_message(self.ss58_address, nonce, body)
        return {
            "X-Chutes-Hotkey": self.ss58_address,
            "X-Chutes-Nonce": nonce,
            "X-Chutes-Signature": self.keypair.sign(message.encode()).hex(),
        }

    def __repr__(self) -> str:
        return f"HotkeyAuth(ss58_address={self.ss58_address!r})"


@attrs.frozen
class UserAuth:
    """The user's credentials, and the choice of which one authenticates a given request.

    A body-carrying POST/PUT/PATCH is signed with the hotkey when there is one; everything else
    uses the API key. A call no credential can authenticate raises
    :class:`~chutes_jobs.ConfigurationError` before anything is sent.
    """

    api_key: ApiKeyAuth | None = None
    hotkey: HotkeyAuth | None = None

    @property
    def kind(self) -> str:
        """``"api_key"``, ``"hotkey"``, ``"api_key+hotkey"`` or ``"none"``."""
        creds = (("api_key", self.api_key), ("hotkey", self.hotkey))
        kinds = [name for name, cred in creds if cred is not None]
        return "+".join(kinds) or "none"

    @property
    def has_credentials(self) -> bool:
        """True when an API key or a hotkey is set."""
        return self.api_key is not None or self.hotkey is not None

    def check(self, method: str, body: bytes | None) -> None:
        """Raise :class:`~chutes_jobs.ConfigurationError` if this call cannot be authenticated."""
        self.headers(method, body, sign=False)

    def headers(self, method: str, body: bytes | None, *, sign: bool = True) -> dict[str, str]:
        """The auth headers for one request of ``method`` carrying exactly ``body``."""
        if self.hotkey is not None and _signable(method, body):
            assert body is not None  # _signable checked it
            return self.hotkey.headers(body) if sign else {}
        if self.api_key is not None:
            return self.api_key.headers()
        if self.hotkey is not None:
            raise ConfigurationError(
                f"{method.upper()} needs an API key: hotkey signing only authenticates calls "
                "with a JSON body (creating a job); the Chutes server rejects signed GET and "
                "DELETE requests. Pass api_key= or set CHUTES_API_KEY for reads, deletes and "
                "downloads."
            )
        raise ConfigurationError(
            f"{method.upper()} needs user credentials: pass api_key= (or set CHUTES_API_KEY), "
            "or hotkey= (CHUTES_HOTKEY_SEED) to create jobs"
        )


def _signable(method: str, body: bytes | None) -> bool:
    return method.upper() in _SIGNABLE_METHODS and bool(body)
