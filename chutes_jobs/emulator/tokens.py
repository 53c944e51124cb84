"""Worker tokens: JWTs as the live server's, HS256 (a per-emulator random secret) or ES256.

The newest live server verifies both algorithms; a client treats tokens as opaque, so the
emulator can issue either (``Emulator(token_algorithm="ES256")``) and checks both.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

__all__ = ["ALGORITHMS", "InvalidToken", "TokenIssuer"]

ISSUER = "chutes"
#: The signing algorithms the emulator can issue and always verifies.
ALGORITHMS = ("HS256", "ES256")


class InvalidToken(Exception):
    """The token is not a valid job token for this job (or this file)."""


class TokenIssuer:
    """Issues and checks job tokens (claims ``sub``, ``iat``, ``iss``, optional ``filename``).

    ``algorithm`` is what :meth:`issue` signs with: ``"HS256"`` with ``secret`` (random by
    default), or ``"ES256"`` with a fresh P-256 key (needs ``cryptography``).
    """

    def __init__(self, secret: str | None = None, algorithm: str = "HS256") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"token algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        self._secret = secret or secrets.token_hex(32)
        self._algorithm = algorithm
        self._ec_key: Any = _ec_private_key() if algorithm == "ES256" else None

    def issue(self, job_id: str, filename: str | None = None) -> str:
        """A token for ``job_id``; with ``filename``, a per-file upload token."""
        claims: dict[str, Any] = {"sub": job_id, "iat": int(time.time()), "iss": ISSUER}
        if filename:
            claims["filename"] = filename
        key = self._ec_key if self._algorithm == "ES256" else self._secret
        return jwt.encode(claims, key, algorithm=self._algorithm)

    def check(self, token: str, job_id: str, filename: str | None = None) -> dict[str, Any]:
        """The claims of ``token`` if it belongs to ``job_id`` (and ``filename``), else raise."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            key = self._verifying_key(algorithm)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
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

    def _verifying_key(self, algorithm: object) -> Any:
        if algorithm == "HS256":
            return self._secret
        if algorithm == "ES256" and self._ec_key is not None:
            return self._ec_key.public_key()
        raise jwt.InvalidAlgorithmError(f"unexpected token algorithm {algorithm!r}")


def _ec_private_key() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError as exc:  # pragma: no cover - cryptography is a test dependency
        raise ValueError("ES256 worker tokens need the cryptography package") from exc
    return ec.generate_private_key(ec.SECP256R1())
