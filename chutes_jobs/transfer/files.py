"""Files of a destination folder opened without following links, and refused unless they are
this user's own regular files.

Everything a download writes (its folders, its partial file and record, the final name it
checks) is reached from a folder descriptor, one component at a time, with ``O_NOFOLLOW``: a
link planted anywhere below the destination folder is refused, never written through, and the
check cannot be raced by swapping a folder for a link afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ..errors import UnsafePathError

__all__ = ["check_owned", "name_max", "open_folder", "open_owned"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# A FIFO planted at the name would block an open for writing: fail (ENXIO) or open, then refuse.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_BINARY = getattr(os, "O_BINARY", 0)

#: File names longer than this many bytes cannot be created (when the folder does not say).
DEFAULT_NAME_MAX = 255


def open_folder(root: Path, parts: Sequence[str], *, filename: str) -> int:
    """A descriptor of the folder ``root/parts[0]/parts[1]/...``, each created as needed.

    ``root`` is opened as given (a link there is the caller's choice); below it no link is
    followed: one in the way raises :class:`UnsafePathError` naming ``filename``.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            try:
                child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise UnsafePathError(
                    filename, f"its folder {part!r} is a link or not a folder"
                ) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_owned(dir_fd: int, name: str, flags: int, *, filename: str, what: str) -> int:
    """Open ``name`` in the folder ``dir_fd`` (``O_CREAT`` in ``flags`` creates it) without
    following a link, and refuse it unless :func:`check_owned` accepts it."""
    try:
        fd = os.open(name, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(filename, f"its {what} {name!r} is a symbolic link") from None
        if exc.errno == errno.ENXIO:
            raise UnsafePathError(filename, f"its {what} {name!r} is not a regular file") from None
        raise
    try:
        check_owned(os.fstat(fd), filename=filename, what=what, name=name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_owned(st: os.stat_result, *, filename: str, what: str, name: str) -> None:
    """Refuse (:class:`UnsafePathError`) what is not a regular file of this user with one link:
    writing to it would write to something else too (a link's target, another name)."""
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {st.st_uid})"
    elif st.st_nlink > 1:
        problem = f"has {st.st_nlink} hard links"
    if problem is not None:
        raise UnsafePathError(filename, f"its {what} {name!r} {problem}; nothing is written to it")


def name_max(dir_fd: int) -> int:
    """The longest file name, in bytes, the folder ``dir_fd`` accepts."""
    try:
        return int(os.fpathconf(dir_fd, "PC_NAME_MAX"))
    except (AttributeError, ValueError, OSError):
        return DEFAULT_NAME_MAX
