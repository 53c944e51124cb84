"""FastAPI-shaped answers: ``{"detail": ...}`` errors, 422 lists, and the bare 500."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = [
    "HTTPError",
    "bare_500",
    "detail_response",
    "json_response",
    "missing_field",
    "validation_error",
]


def _dumps(data: Any) -> str:
    # Starlette's JSONResponse: compact separators, non-ASCII kept as is.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer shaped like Starlette's ``JSONResponse``."""
    return web.Response(
        body=_dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def detail_response(
    status: int, detail: Any, headers: dict[str, str] | None = None
) -> web.Response:
    """``{"detail": detail}`` with ``status``, as FastAPI answers an ``HTTPException``."""
    return json_response({"detail": detail}, status=status, headers=headers)


def bare_500() -> web.Response:
    """The unhandled-exception answer of Starlette: ``text/plain`` ``Internal Server Error``."""
    return web.Response(status=500, text="Internal Server Error", content_type="text/plain")


def missing_field(where: str, name: str) -> dict[str, Any]:
    """One pydantic ``missing`` entry of a 422 ``detail`` list."""
    return {"type": "missing", "loc": [where, name], "msg": "Field required", "input": None}


def validation_error(entries: list[dict[str, Any]]) -> web.Response:
    """A FastAPI 422 answer listing every validation failure."""
    return detail_response(422, entries)


class HTTPError(Exception):
    """Raised by a route to answer ``{"detail": ...}`` (or a bare 500 with ``bare=True``)."""

    def __init__(
        self,
        status: int,
        detail: Any = None,
        *,
        headers: dict[str, str] | None = None,
        bare: bool = False,
    ) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers
        self.bare = bare

    @classmethod
    def server_error(cls) -> HTTPError:
        """The bare 500 the live server answers where it crashes."""
        return cls(500, bare=True)

    def response(self) -> web.Response:
        """The answer this error stands for."""
        if self.bare:
            return bare_500()
        return detail_response(self.status, self.detail, self.headers)
