"""Path safety for output files, both ways.

Downloading, a server-supplied name never escapes the destination folder
(:func:`safe_destination`); finishing a job, a worker never lists a name a downloading client
would refuse (:func:`check_output_name`, :func:`collect_outputs`): the rules are the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import ConfigurationError, UnsafePathError

__all__ = ["OutputsSpec", "check_output_name", "collect_outputs", "safe_destination"]

#: ``{relative_name: path}``, an output directory, or None (no outputs).
OutputsSpec = Mapping[str, str | PathLike[str]] | str | PathLike[str] | None

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_destination(dest_dir: Path, filename: str) -> Path:
    """The path under ``dest_dir`` where the output file ``filename`` may be written.

    ``filename`` is a relative POSIX path as the worker reported it; subfolders are allowed
    (``sub/a.bin``). Raises :class:`~chutes_jobs.errors.UnsafePathError` naming the file and
    the reason for: empty names, NUL, backslashes, absolute paths (POSIX or Windows, UNC
    included), drive letters, ``.``/``..``/empty components, and any name whose resolved path
    (following symlinks that already exist under ``dest_dir``) lands outside ``dest_dir``.
    """
    reason = lexical_problem(filename)
    if reason is not None:
        raise UnsafePathError(filename, reason)
    root = dest_dir.resolve()
    target = root.joinpath(*filename.split("/"))
    resolved = target.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise UnsafePathError(filename, f"resolves outside the destination folder {str(root)!r}")
    return target


def lexical_problem(filename: str) -> str | None:
    """Why the name itself is unsafe, before looking at the disk (``None`` when it is fine)."""
    if not filename:
        return "empty name"
    if "\x00" in filename:
        return "contains a NUL character"
    if "\\" in filename:  # a separator on Windows: "..\\x", "\\\\server\\share", "C:\\x"
        return "contains a backslash"
    if _DRIVE.match(filename):
        return "starts with a drive letter"
    if PurePosixPath(filename).is_absolute() or PureWindowsPath(filename).anchor:
        return "is an absolute path"
    for part in filename.split("/"):
        if part == "..":
            return "contains a '..' component"
        if part in ("", "."):
            return "contains an empty or '.' component"
    return None


def check_output_name(name: str) -> str:
    """``name`` if it is a safe relative POSIX path, else :class:`ConfigurationError`.

    The rules are the ones a downloading client applies (:func:`safe_destination`): no
    absolute path, no ``..``/``.``/empty component, no backslash, drive letter or NUL. A name
    breaking them would be refused on the user's side, so it is refused here, before anything
    is sent.
    """
    problem = lexical_problem(name) if isinstance(name, str) else "not a string"
    if problem is not None:
        raise ConfigurationError(f"output name {name!r} is not a safe relative path: {problem}")
    return name


def collect_outputs(outputs: OutputsSpec) -> dict[str, Path]:
    """``{relative POSIX name: file}`` from a mapping or a directory walked recursively.

    Every file must exist and be a regular file: a finish that lists a file the worker cannot
    upload would leave the job with a missing output. Blocking: call it in a thread.
    """
    if outputs is None:
        return {}
    if isinstance(outputs, str | PathLike):
        return _walk(Path(outputs))
    if not isinstance(outputs, Mapping):
        raise ConfigurationError(
            f"outputs must be a mapping, a directory or None, got {type(outputs).__name__}"
        )
    collected = {check_output_name(name): Path(path) for name, path in outputs.items()}
    for name, path in collected.items():
        if not path.is_file():
            raise ConfigurationError(f"output {name!r}: {str(path)!r} is not a readable file")
    return collected


def _walk(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise ConfigurationError(f"output directory {str(root)!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {check_output_name(p.relative_to(root).as_posix()): p for p in files}
