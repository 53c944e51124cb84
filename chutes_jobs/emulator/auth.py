"""User authentication, with the live server's checks, order and 401/403 texts.

Hotkey auth is used only when ``X-Chutes-Hotkey``, ``X-Chutes-Signature`` and
``X-Chutes-Nonce`` are all present; otherwise the three are ignored and the request is an
API-key request. ``Authorization`` carries an API key (``cpk_...``) or an OAuth access token
(``cak_...``); a token without the scope a route needs answers 403. The emulator's scopes are
:data:`SCOPE_READ` (read a job, download its files) and :data:`SCOPE_WRITE` (create, delete).
"""

from __future__ import annotations

import hashlib
import time

from aiohttp import web

from .responses import HTTPError
from .store import API_KEY_PATTERN, Store, User

__all__ = ["NONCE_WINDOW", "SCOPE_READ", "SCOPE_WRITE", "authenticate", "hotkey_support"]

#: Seconds a signed request's nonce may differ from the server's clock.
NONCE_WINDOW = 600
#: The OAuth scope reading a job and downloading its files needs.
SCOPE_READ = "jobs:read"
#: The OAuth scope creating and deleting jobs needs.
SCOPE_WRITE = "jobs:write"
NO_PERMISSION = "Token does not have permission for this resource"
_KEY_PREFIXES = ("cpk_", "cak_")

_SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH"})


def hotkey_support() -> bool:
    """True when ``bittensor_wallet`` is importable, so signatures can be verified."""
    try:
        import bittensor_wallet  # noqa: F401
    except ImportError:
        return False
    return True


def authenticate(request: web.Request, body: bytes | None, store: Store, scope: str) -> User:
    """The user making ``request``; ``body`` is the raw body of a signed POST/PUT/PATCH.

    ``scope`` is what an OAuth access token must hold for this route (else 403).
    """
    hotkey = request.headers.get("X-Chutes-Hotkey")
    signature = request.headers.get("X-Chutes-Signature")
    nonce = request.headers.get("X-Chutes-Nonce")
    if hotkey and signature and nonce:
        return _hotkey_user(request, hotkey, signature, nonce, body, store)
    return _api_key_user(request.headers.get("Authorization"), store, scope)


def _api_key_user(authorization: str | None, store: Store, scope: str) -> User:
    token = authorization.split(" ")[-1] if authorization else ""
    if not token:
        raise HTTPError(401, "Can't find a user with that api key in our db :(")
    is_bearer = authorization is not None and authorization.lower().lstrip().startswith("bearer ")
    if is_bearer and not token.strip().startswith(_KEY_PREFIXES):
        raise HTTPError(401, "Invalid token.")  # no session tokens exist here
    if token.startswith("cak_"):
        return _oauth_user(token, store, scope)
    if not API_KEY_PATTERN.match(token):
        raise HTTPError(401, "Missing or invalid authorization header(s)")
    user = store.user_by_api_key(token)
    if user is None:
        raise HTTPError(401, "Invalid token or user not found")
    return user


def _oauth_user(token: str, store: Store, scope: str) -> User:
    found = store.user_by_oauth_token(token)
    if found is None:
        raise HTTPError(401, "Invalid token or user not found")
    user, scopes = found
    if scope not in scopes:
        raise HTTPError(403, NO_PERMISSION)
    return user


def _hotkey_user(
    request: web.Request,
    hotkey: str,
    signature: str,
    nonce: str,
    body: bytes | None,
    store: Store,
) -> User:
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
