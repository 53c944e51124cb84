"""What a partial file is: its names, and the record binding it to one server file.

A download of ``name`` writes ``name.part`` and, next to it, ``name.part.json``: the record of
the job id, file id and announced size the partial's bytes came from, and of the process that
writes it. A resume continues a partial only when its record names the same job, file and size
(``partial.py``); anything else found under the names is discarded. Both names always fit when
the final name fits: too long a name keeps its first bytes and gets a hash of the whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from typing import Any, Final

import attrs

from .files import DEFAULT_NAME_MAX, open_owned

__all__ = [
    "PART_SUFFIX",
    "RECORD_SUFFIX",
    "PartIdentity",
    "PartNames",
    "PartRecord",
    "part_names",
    "read_record",
    "remove_record",
    "write_record",
]

PART_SUFFIX: Final = ".part"
RECORD_SUFFIX: Final = ".part.json"
_HASH_CHARS = 12
_FORMAT = "chutes-jobs partial 1"
_MAX_RECORD_BYTES = 64 * 1024


@attrs.frozen
class PartIdentity:
    """The server file a download fetches: ``filename`` is only for messages."""

    job_id: str
    file_id: str
    filename: str


@attrs.frozen
class PartNames:
    """The names, in the final file's folder, of its partial file and of that file's record."""

    part: str
    record: str


@attrs.frozen
class PartRecord:
    """What the record says: the server file (and its size, once announced) and its writer."""

    job_id: str
    file_id: str
    size: int | None
    pid: int
    host: str

    @classmethod
    def for_this_process(cls, identity: PartIdentity, size: int | None) -> PartRecord:
        return cls(identity.job_id, identity.file_id, size, os.getpid(), socket.gethostname())

    def names(self, identity: PartIdentity) -> bool:
        """Whether the partial's bytes came from ``identity``'s server file."""
        return (self.job_id, self.file_id) == (identity.job_id, identity.file_id)

    def holder(self) -> str:
        """The download writing the partial, for a person."""
        return f"another download (process {self.pid} on {self.host}, job {self.job_id})"


def part_names(final_name: str, name_max: int = DEFAULT_NAME_MAX) -> PartNames:
    """``name.part`` and ``name.part.json``; when those would exceed ``name_max`` bytes, the
    name's first bytes, ``~`` and 12 hex digits of its sha256 stand for the name."""
    encoded = os.fsencode(final_name)
    stem = final_name
    if len(encoded) + len(RECORD_SUFFIX) > name_max:
        room = name_max - len(RECORD_SUFFIX) - 1 - _HASH_CHARS
        digest = hashlib.sha256(encoded).hexdigest()[:_HASH_CHARS]
        stem = f"{_first_bytes(final_name, room)}~{digest}"
    return PartNames(stem + PART_SUFFIX, stem + RECORD_SUFFIX)


def _first_bytes(name: str, limit: int) -> str:
    """The longest prefix of ``name`` that encodes to at most ``limit`` bytes (whole
    characters only)."""
    size = 0
    for index, char in enumerate(name):
        size += len(os.fsencode(char))
        if size > limit:
            return name[:index]
    return name


def read_record(dir_fd: int, name: str, *, filename: str) -> PartRecord | None:
    """The record ``name`` in ``dir_fd``; ``None`` when missing or unreadable. A link or a
    file of another user there raises :class:`~chutes_jobs.UnsafePathError`."""
    try:
        fd = open_owned(dir_fd, name, os.O_RDONLY, filename=filename, what="record")
    except FileNotFoundError:
        return None
    try:
        raw = os.read(fd, _MAX_RECORD_BYTES)
    finally:
        os.close(fd)
    try:
        return _parse(json.loads(raw))
    except (ValueError, TypeError, KeyError):
        return None


def _parse(data: Any) -> PartRecord | None:
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return None
    size = data["size"]
    record = PartRecord(data["job_id"], data["file_id"], size, data["pid"], data["host"])
    texts = (record.job_id, record.file_id, record.host)
    if not all(isinstance(t, str) for t in texts) or not isinstance(record.pid, int):
        return None
    if size is not None and (not isinstance(size, int) or size < 0):
        return None
    return record


def write_record(dir_fd: int, name: str, record: PartRecord, *, filename: str) -> None:
    """Write ``record`` as ``name`` in ``dir_fd`` (never through a link)."""
    data = {"format": _FORMAT, **attrs.asdict(record)}
    body = memoryview(json.dumps(data).encode())
    fd = open_owned(dir_fd, name, os.O_WRONLY | os.O_CREAT, filename=filename, what="record")
    try:
        os.ftruncate(fd, 0)
        while body:
            body = body[os.write(fd, body) :]
    finally:
        os.close(fd)


def remove_record(dir_fd: int, name: str) -> None:
    """Remove the record ``name`` (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
