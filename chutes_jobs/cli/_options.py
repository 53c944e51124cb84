"""Options shared by several commands, reading job arguments, and the session they open."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import ConfigurationError
from ..job import DISK_GB_MAX, DISK_GB_MIN
from ..retry import RetryPolicy
from ..session import DEFAULT_BASE_URL, ChutesSession

T = TypeVar("T")

#: What the server uses when no disk size is given (docs/PROTOCOL.md).
DEFAULT_DISK_GB = 10

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
    *, creates_only: bool = False
) -> Callable[[Callable[..., Coroutine[Any, Any, T]]], Callable[..., Coroutine[Any, Any, T]]]:
    """Open a :class:`ChutesSession` from the connection options; pass it as ``session``.

    Without the credentials the command needs, a :class:`ConfigurationError` (exit 2) names
    the command line's ways to give them, before anything is sent. ``creates_only``: the
    command only creates jobs, which a hotkey (``$CHUTES_HOTKEY_SEED``) can sign.
    """

    def decorate(
        fn: Callable[..., Coroutine[Any, Any, T]],
    ) -> Callable[..., Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def wrapper(*, base_url: str, api_key: str | None, retries: int, **kwargs: Any) -> T:
            settings = session_settings(base_url, api_key, retries)
            async with ChutesSession.from_env(**settings) as session:
                check_credentials(session.auth_kind, creates_only=creates_only)
                return await fn(session=session, **kwargs)

        return wrapper

    return decorate


def check_credentials(auth_kind: str, *, creates_only: bool) -> None:
    """Refuse a command whose calls the session cannot authenticate (CLI wording)."""
    if "api_key" in auth_kind or (creates_only and auth_kind == "hotkey"):
        return
    if auth_kind == "hotkey":
        raise ConfigurationError(
            "this command needs an API key (a hotkey from CHUTES_HOTKEY_SEED only signs job "
            "creation): pass --api-key KEY or set CHUTES_API_KEY"
        )
    raise ConfigurationError("no credentials: pass --api-key KEY or set CHUTES_API_KEY")


def add_options(options: list[Callable[..., Any]]) -> Callable[..., Any]:
    """Apply a list of click decorators, first one outermost."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def disk_gb_option() -> Callable[..., Any]:
    """``--disk-gb N``, a whole number the server accepts (exit 2 before anything is sent)."""
    return click.option(
        "--disk-gb",
        type=int,
        default=None,
        callback=_check_disk_gb,
        metavar="N",
        help=f"Disk size in GB: {DISK_GB_MIN + 1} to {DISK_GB_MAX - 1} "
        f"(without it the server gives {DEFAULT_DISK_GB}).",
    )


def _check_disk_gb(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and not DISK_GB_MIN < value < DISK_GB_MAX:
        raise click.BadParameter(
            f"{value}: the server accepts {DISK_GB_MIN + 1} to {DISK_GB_MAX - 1} GB "
            f"(leave --disk-gb out for its default, {DEFAULT_DISK_GB})"
        )
    return value


def read_text(source: str, option: str) -> str:
    """The text of ``source`` (a path, or ``-`` for stdin); a usage error if unreadable."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {source}: {exc}", param_hint=option) from None
