"""Job arguments from the command line: ``--arg NAME=text``, ``--arg NAME:=json``, ``--args-json``.

The ``--arg`` convention is HTTPie's: the first ``=`` splits name from value; when a ``:``
stands right before it, the value is JSON, otherwise it is text, always. A value that is not
valid JSON after ``:=`` is a usage error, so a typo never becomes a (billed) job.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ._options import read_text

ARG_METAVAR = "NAME=TEXT|NAME:=JSON"
ARG_HELP = (
    "A job argument, repeatable: NAME=TEXT is always a string; NAME:=JSON is a JSON value "
    "(number, list, object, true/false/null), and invalid JSON is an error. "
    "Overrides --args-json."
)


def job_arg_pairs(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, Any], ...]:
    """The ``--arg`` callback: each value parsed as click reads it (a usage error if bad)."""
    try:
        return tuple(parse_job_arg(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def parse_job_arg(pair: str) -> tuple[str, Any]:
    """``"n=5"`` → ``("n", "5")``; ``"n:=5"`` → ``("n", 5)``.

    Raises ``ValueError`` naming the pair when it has no ``=``, no name, or bad JSON.
    """
    name, sep, raw = pair.partition("=")
    is_json = name.endswith(":")
    if is_json:
        name = name[:-1]
    if not sep or not name:
        raise ValueError(f"{pair!r} is not NAME=TEXT or NAME:=JSON")
    if not is_json:
        return name, raw
    try:
        return name, json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ValueError(
            f"{pair!r}: the value after ':=' is not JSON ({exc}); for text, write {name}=VALUE"
        ) from None


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity``, which Python reads but JSON (and the server) does not know."""
    raise ValueError(f"{name} is not a JSON value")


def job_args(
    pairs: tuple[tuple[str, Any], ...], args_json: str | None, disk_gb: int | None
) -> dict[str, Any]:
    """Job arguments from ``--args-json FILE|-`` and the parsed ``--arg`` pairs (these win).

    A usage error if the disk size is given both as ``--disk-gb`` and as ``_disk_gb``.
    """
    args: dict[str, Any] = {}
    if args_json is not None:
        args.update(read_args_json(args_json))
    args.update(pairs)
    if disk_gb is not None and "_disk_gb" in args:
        raise click.UsageError(
            "give the disk size either as --disk-gb or as the job argument _disk_gb, not both"
        )
    return args


def read_args_json(source: str) -> dict[str, Any]:
    """The JSON object of job arguments in ``source`` (a path, or ``-`` for stdin)."""
    try:
        loaded = json.loads(read_text(source, "--args-json"))
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args-json") from None
    if not isinstance(loaded, dict):
        raise click.BadParameter("must hold a JSON object", param_hint="--args-json")
    return loaded
