"""A worker's output files: which names it may report, and the files behind them.

Names are checked before anything is sent (:func:`output_name_problem`): the rules of a
downloading client, plus what the live server cannot serve back (its download names the file
in a ``Content-Disposition`` header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

from ..errors import ConfigurationError, OutputNameError
from .paths import lexical_problem

__all__ = ["OutputsSpec", "check_output_names", "collect_outputs", "output_name_problem"]

#: ``{relative_name: path}``, an output directory, or None (no outputs).
OutputsSpec = Mapping[str, str | PathLike[str]] | str | PathLike[str] | None


#: What a header value cannot carry (uvicorn's rule: C0 controls but tab, and DEL).
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def output_name_problem(name: object) -> str | None:
    """Why a worker must not report the output name ``name`` (None when it may).

    The rules of a downloading client (``transfer.paths``: no absolute path, no ``..``/``.``/empty
    component, no backslash, drive letter or NUL), plus what the live server cannot serve
    back: its download names the file in a ``Content-Disposition`` header, which answers 500
    for a name that is not latin-1 or holds a newline or another control character.
    """
    if not isinstance(name, str):
        return "not a string"
    problem = lexical_problem(name)
    if problem is not None:
        return f"not a safe relative path: {problem}"
    try:
        name.encode("latin-1")
    except UnicodeEncodeError:
        return "not latin-1: the server could never serve it for download"
    control = _HEADER_UNSAFE.search(name)
    if control is not None:
        what = {"\n": "a newline", "\r": "a carriage return"}.get(control.group())
        what = what or f"the control character {control.group()!r}"
        return f"contains {what}: the server could never serve it for download"
    return None


def check_output_names(names: Iterable[object]) -> None:
    """:class:`OutputNameError` naming every name of ``names`` a worker must not report."""
    problems = {}
    for name in names:
        problem = output_name_problem(name)
        if problem is not None:
            problems[name if isinstance(name, str) else repr(name)] = problem
    if problems:
        raise OutputNameError(problems)


def collect_outputs(outputs: OutputsSpec) -> dict[str, Path]:
    """``{relative POSIX name: file}`` from a mapping or a directory walked recursively.

    Every name is checked (:func:`output_name_problem`; :class:`OutputNameError` names each
    refused one) and every file must exist and be a regular file: a finish that lists a file
    the worker cannot upload would leave the job with a missing output. Blocking: call it in
    a thread.
    """
    if outputs is None:
        return {}
    if isinstance(outputs, str | PathLike):
        collected = _walk(Path(outputs))
    elif isinstance(outputs, Mapping):
        check_output_names(outputs)
        collected = {name: Path(path) for name, path in outputs.items()}
    else:
        raise ConfigurationError(
            f"outputs must be a mapping, a directory or None, got {type(outputs).__name__}"
        )
    for name, path in collected.items():
        if not path.is_file():
            raise ConfigurationError(f"output {name!r}: {str(path)!r} is not a readable file")
    return collected


def _walk(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise ConfigurationError(f"output directory {str(root)!r} does not exist")
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    check_output_names(files)
    return files
