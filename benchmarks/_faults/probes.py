"""Observing the client from outside: its file descriptors, and the files under a folder (while
a run goes on, and before/after one). Memory figures: ``benchmarks._common``; checksums:
``chutes_jobs.demo.sha256_file``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from chutes_jobs.transfer import PART_SUFFIX, RECORD_SUFFIX

__all__ = [
    "FinalNameWatcher",
    "TreeState",
    "open_descriptors",
    "settled_descriptors",
    "tree_changes",
    "tree_state",
]


def open_descriptors() -> dict[int, str]:
    """This process's open file descriptors and what each is (``socket:[...]``, a path...)."""
    found: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


async def settled_descriptors(baseline: dict[int, str], *, within: float = 2.0) -> list[str]:
    """The descriptors open beyond ``baseline`` once the process has settled.

    Descriptors closed by a worker thread or by the loop's next iterations (a connection's
    transport, a file closed after the write in flight) get ``within`` seconds; what is
    still open then stays open (a leak). Each is described as ``"socket:[...]"`` or its path.
    """
    deadline = time.monotonic() + within
    while True:
        extra = [target for fd, target in open_descriptors().items() if fd not in baseline]
        if not extra or time.monotonic() > deadline:
            return extra
        await asyncio.sleep(0.02)


#: A file's identity and state: kind, size, mtime (ns), inode, and a link's target.
TreeState = dict[str, tuple[str, int, int, int, str]]


def tree_state(root: Path, *, skip: Path | None = None) -> TreeState:
    """Everything under ``root`` (links not followed), except the subtree ``skip``: a write,
    a new file, a removal or a replaced link anywhere shows as a difference."""
    state: TreeState = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if skip is not None and here == skip:
            dirs.clear()
            continue
        for name in dirs + files:
            path = here / name
            if skip is not None and path == skip:
                continue
            info = path.lstat()
            kind = "link" if stat.S_ISLNK(info.st_mode) else "dir" if name in dirs else "file"
            target = os.readlink(path) if kind == "link" else ""
            state[str(path.relative_to(root))] = (
                kind,
                info.st_size if kind == "file" else 0,
                info.st_mtime_ns,
                info.st_ino,
                target,
            )
    return state


def tree_changes(before: TreeState, after: TreeState) -> list[str]:
    """What differs between two :func:`tree_state` snapshots, one line per path."""
    changes = [f"{p} removed" for p in before if p not in after]
    changes += [f"{p} created" for p in after if p not in before]
    changes += [f"{p} changed" for p in before if p in after and before[p] != after[p]]
    return sorted(changes)


class FinalNameWatcher:
    """A thread that lists a folder every few milliseconds while downloads run into it, and
    records every file seen under a final name (not a partial ``*.part`` or its record
    ``*.part.json``) whose size is not the one
    ``expected(relative_path)`` says (None: no claim for that path)."""

    def __init__(self, root: Path, expected: Callable[[str], int | None]) -> None:
        self.root = root
        self.expected = expected
        self.scans = 0
        self.incomplete: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="final-name-watcher", daemon=True)

    def __enter__(self) -> FinalNameWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._scan()  # the state at the end counts too

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self._scan()

    def _scan(self) -> None:
        self.scans += 1
        for path, size in _files(self.root):
            if path.endswith((PART_SUFFIX, RECORD_SUFFIX)):
                continue
            want = self.expected(path)
            if want is not None and size != want:
                self.incomplete.append(f"{path} held {size} of {want} bytes")


def _files(root: Path) -> Iterator[tuple[str, int]]:
    """(relative path, size) of every regular file under ``root``, tolerating a tree that
    changes while it is listed."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield str(Path(entry.path).relative_to(root)), entry.stat().st_size
            except OSError:
                continue
