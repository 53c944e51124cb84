"""Worker tokens: HS256 JWTs signed with a per-emulator random secret, as the live server's."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

__all__ = ["InvalidToken", "TokenIssuer"]

ISSUER = "chutes"


class InvalidToken(Exception):
    """The token is not a valid job token for this job (or this file)."""


class TokenIssuer:
    """Issues and checks job tokens (claims ``sub``, ``iat``, ``iss``, optional ``filename``)."""

    def __init__(self, secret: str | None = None) -> None:
        self._secret = secret or secrets.token_hex(32)

    def issue(self, job_id: str, filename: str | None = None) -> str:
        """A token for ``job_id``; with ``filename``, a per-file upload token."""
        claims: dict[str, Any] = {"sub": job_id, "iat": int(time.time()), "iss": ISSUER}
        if filename:
            claims["filename"] = filename
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def check(self, token: str, job_id: str, filename: str | None = None) -> dict[str, Any]:
        """The claims of ``token`` if it belongs to ``job_id`` (and ``filename``), else raise."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"verify_exp": False, "require": ["iat", "iss"]},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(str(exc)) from exc
        if claims.get("sub") != job_id:
            raise InvalidToken("job id in token does not match")
        if filename and claims.get("filename") != filename:
            raise InvalidToken("filename mismatch")
        return claims
