"""Options shared by several commands, reading job arguments, and the session they open."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from ..job import DISK_GB_MAX, DISK_GB_MIN
from ..retry import RetryPolicy
from ..session import DEFAULT_BASE_URL, ChutesSession

T = TypeVar("T")

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
)
out_dir_type = click.Path(file_okay=False, path_type=Path)


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--base-url``, ``--api-key`` (read from the environment when not given), ``--retries``."""
    fn = click.option(
        "--retries",
        type=click.IntRange(0, 20),
        default=4,
        show_default=True,
        help="Retries of a failed call that is safe to repeat.",
    )(fn)
    fn = click.option(
        "--api-key",
        envvar="CHUTES_API_KEY",
        metavar="KEY",
        help="API key (cpk_...) or OAuth access token (cak_...); default: $CHUTES_API_KEY.",
    )(fn)
    return click.option(
        "--base-url",
        envvar="CHUTES_BASE_URL",
        default=DEFAULT_BASE_URL,
        show_default=True,
        metavar="URL",
        help="API root (also $CHUTES_BASE_URL).",
    )(fn)


def session_settings(base_url: str, api_key: str | None, retries: int) -> dict[str, Any]:
    """``ChutesSession`` settings from the connection options."""
    policy = RetryPolicy(max_attempts=retries + 1)
    return {"base_url": base_url, "api_key": api_key or None, "retry_policy": policy}


def with_session(
    fn: Callable[..., Coroutine[Any, Any, T]],
) -> Callable[..., Coroutine[Any, Any, T]]:
    """Open a :class:`ChutesSession` from the connection options; pass it as ``session``."""

    @functools.wraps(fn)
    async def wrapper(*, base_url: str, api_key: str | None, retries: int, **kwargs: Any) -> T:
        settings = session_settings(base_url, api_key, retries)
        async with ChutesSession.from_env(**settings) as session:
            return await fn(session=session, **kwargs)

    return wrapper


def add_options(options: list[Callable[..., Any]]) -> Callable[..., Any]:
    """Apply a list of click decorators, first one outermost."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def disk_gb_option() -> Callable[..., Any]:
    """``--disk-gb N``, checked before anything is sent (exit 2 when out of range)."""
    return click.option(
        "--disk-gb",
        type=click.FloatRange(DISK_GB_MIN, DISK_GB_MAX, min_open=True, max_open=True),
        default=None,
        metavar="N",
        help=f"Disk size in GB, {DISK_GB_MIN} < N < {DISK_GB_MAX}.",
    )


def read_text(source: str, option: str) -> str:
    """The text of ``source`` (a path, or ``-`` for stdin); a usage error if unreadable."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {source}: {exc}", param_hint=option) from None
