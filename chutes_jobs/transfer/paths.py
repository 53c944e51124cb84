"""Path safety for output files, both ways.

Downloading, a server-supplied name never escapes the destination folder
(:func:`safe_destination`); finishing a job, a worker never lists a name a downloading client
would refuse (``transfer.outputs`` applies :func:`lexical_problem` too): the rules are the same.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import UnsafePathError

__all__ = ["lexical_problem", "safe_destination"]

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
