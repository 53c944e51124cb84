"""User authentication, with the live server's checks, order and 401 texts."""

from __future__ import annotations

import hashlib
import time

from aiohttp import web

from .responses import HTTPError
from .store import API_KEY_PATTERN, Store, User

__all__ = ["NONCE_WINDOW", "authenticate", "hotkey_support"]

#: Seconds a signed request's nonce may differ from the server's clock.
NONCE_WINDOW = 600

_SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH"})


def hotkey_support() -> bool:
    """True when ``bittensor_wallet`` is importable, so signatures can be verified."""
    try:
        import bittensor_wallet  # noqa: F401
    except ImportError:
        return False
    return True


def authenticate(request: web.Request, body: bytes | None, store: Store) -> User:
    """The user making ``request``; ``body`` is the raw body of a signed POST/PUT/PATCH."""
    hotkey = request.headers.get("X-Chutes-Hotkey")
    signature = request.headers.get("X-Chutes-Signature")
    if hotkey and signature:
        return _hotkey_user(request, hotkey, signature, body, store)
    return _api_key_user(request.headers.get("Authorization"), store)


def _api_key_user(authorization: str | None, store: Store) -> User:
    token = authorization.split(" ")[-1] if authorization else ""
    if token:
        is_bearer = authorization is not None and authorization.lower().lstrip().startswith(
            "bearer "
        )
        if is_bearer and not token.strip().startswith("cpk_"):
            raise HTTPError(401, "Invalid token.")  # no session tokens exist here
        if not API_KEY_PATTERN.match(token):
            raise HTTPError(401, "Missing or invalid authorization header(s)")
        user = store.user_by_api_key(token)
        if user is None:
            raise HTTPError(401, "Invalid token or user not found")
        return user
    raise HTTPError(401, "Can't find a user with that api key in our db :(")


def _hotkey_user(
    request: web.Request, hotkey: str, signature: str, body: bytes | None, store: Store
) -> User:
    nonce = request.headers.get("X-Chutes-Nonce", "")
    if not nonce.isdigit() or abs(time.time() - int(nonce)) >= NONCE_WINDOW:
        raise HTTPError(401, "Invalid nonce!")
    if request.method not in _SIGNED_METHODS or body is None:
        raise HTTPError(401, "Either payload_str or purpose must be provided")
    message = f"{hotkey}:{nonce}:{hashlib.sha256(body).hexdigest()}"
    try:
        signature_bytes = bytes.fromhex(signature)
    except ValueError as exc:
        raise HTTPError(401, f"Invalid signature: {signature}, with error: {exc}") from exc
    if not _verify(hotkey, message, signature_bytes):
        raise HTTPError(401, f"Invalid request signature for hotkey {hotkey}. Message: {message}")
    user = store.user_by_hotkey(hotkey)
    if user is None:
        raise HTTPError(401, f"Could not find user with hotkey: {hotkey}")
    return user


def _verify(hotkey: str, message: str, signature: bytes) -> bool:
    try:
        from bittensor_wallet import Keypair
    except ImportError:  # without the library no signature can be checked: refuse them all
        return False
    try:
        return bool(Keypair(ss58_address=hotkey).verify(message, signature))
    except ValueError:
        return False
