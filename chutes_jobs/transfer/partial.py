"""The partial file of one download: owned, bound to its server file, published when proven.

* **Owned**: :meth:`Partial.claim` opens ``name.part`` without following links, refuses
  anything but this user's own regular file, and takes an exclusive ``flock`` on it for the
  whole download, so one download (task or process) writes it at a time; another one fails at
  once with :class:`~chutes_jobs.DownloadInProgressError`. Only the owner publishes it.
* **Bound**: the record next to it (``record.py``) names the job, file id and size its bytes
  came from. Anything else found under the names is discarded (a DEBUG log line says why) and
  the download starts from byte 0; a resume's answer must announce the recorded size.
* **Published when proven**: :meth:`Partial.publish` gets the byte count proven by the caller
  (``receive.check_complete``), checks the file still holds exactly that, fsyncs, renames it
  into place and checks the final name is that very file before it is reported.

Each blocking step runs in a worker thread (:mod:`.threads`): a cancellation neither leaks the
descriptors nor closes them under a running write or fsync.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Final

import attrs

from ..errors import (
    DownloadInProgressError,
    IncompleteTransferError,
    InsufficientSpaceError,
    UnsafePathError,
)
from .files import name_max, open_folder, open_owned
from .partfile import PartWriter
from .receive import BodyPlan
from .record import PartIdentity, PartNames, PartRecord, part_names, read_record, remove_record
from .record import write_record as _write_record
from .space import NO_SPACE_ERRNOS, RESERVATIONS, free_bytes
from .threads import ThreadJobs, acquire_in_thread

__all__ = ["Partial"]

log = logging.getLogger("chutes_jobs")

#: Opening the partial again after its previous owner published or removed it meanwhile.
_CLAIM_TRIES: Final = 5


@attrs.define
class _Claimed:
    """What :meth:`Partial.claim` acquired in its thread."""

    dir_fd: int
    fd: int
    names: PartNames
    record: PartRecord
    kept: int

    def release(self) -> None:
        """Let go of what the claim took (for a caller cancelled meanwhile)."""
        _let_go(self.dir_fd, self.fd, self.names, empty=self.kept == 0)


class Partial:
    """The partial file of the download of ``identity`` to ``dest`` (see the module docstring).

    Use ``partial = await Partial.claim(...)``, then, per attempt, :attr:`resume_from`,
    :meth:`begin`, the writer it returns, then :meth:`publish` once; :meth:`close` always.
    """

    def __init__(self, claimed: _Claimed, dest: Path, identity: PartIdentity) -> None:
        self._dir_fd, self._fd = claimed.dir_fd, claimed.fd
        self._record = claimed.record
        self._kept = claimed.kept
        self.names = claimed.names
        self.dest = dest
        self.identity = identity
        self._jobs = ThreadJobs()
        self._writer: PartWriter | None = None
        self._closed = self._published = self._released = False

    @classmethod
    async def claim(
        cls, root: Path, dest: Path, identity: PartIdentity, *, overwrite: bool
    ) -> Partial:
        """Own the partial file of ``dest`` (a path under the folder ``root``; the folders in
        between are made as needed and never followed if they are links).

        Raises ``FileExistsError`` when ``dest`` exists and not ``overwrite``,
        :class:`~chutes_jobs.DownloadInProgressError` when another download owns the partial,
        :class:`~chutes_jobs.UnsafePathError` when a link or a file of another user is in
        the way. Nothing is written in those cases.
        """
        parts = dest.parent.relative_to(root).parts
        acquire = functools.partial(_claim, root, parts, dest, identity, overwrite)
        claimed = await acquire_in_thread(acquire, _Claimed.release)
        return cls(claimed, dest, identity)

    @property
    def path(self) -> Path:
        """Where the partial file is."""
        return self.dest.with_name(self.names.part)

    @property
    def kept(self) -> int:
        """Bytes of the server file the partial holds (written, or being written, in order)."""
        return self._writer.position if self._writer is not None else self._kept

    async def progress(self) -> int:
        """:attr:`kept`, as the retry loop measures progress."""
        return self.kept

    @property
    def resume_from(self) -> int:
        """The byte to ask the next answer to start at: 0 unless the partial holds bytes of a
        file of known size (then at most its last byte, which re-checks the size)."""
        size = self._record.size
        if size is None or size == 0 or self.kept == 0:
            return 0
        return min(self.kept, size - 1)

    async def begin(self, plan: BodyPlan) -> PartWriter:
        """Make the partial ready for a body by ``plan`` and return the writer to write it.

        A restart (offset 0) empties the file and records the announced size; a resume needs
        the recorded size announced again. Reserves the space the body needs first.
        Raises :class:`IncompleteTransferError` (after emptying the partial: the next attempt
        restarts) for a refused or mismatched answer, :class:`InsufficientSpaceError` (after
        deleting the partial) when the body cannot fit.
        """
        self._drop_writer()
        try:
            await self._jobs.run(self._begin, plan)
        except InsufficientSpaceError:
            await self._jobs.run(self._delete)
            raise
        self._writer = PartWriter(self._fd, self._jobs, plan.offset)
        return self._writer

    def _begin(self, plan: BodyPlan) -> None:
        problem = plan.refused
        if problem is None and plan.offset > 0 and plan.total != self._record.size:
            problem = (
                f"the server announced {plan.total} bytes, the partial is of {self._record.size}"
            )
        if problem is not None:
            self._restart(None, f"{problem}; restarting from byte 0")
            raise IncompleteTransferError(f"{self.identity.filename}: {problem}; restarting")
        if plan.offset == 0:
            self._restart(plan.total, None)
        elif self._kept > plan.offset:  # resuming at its last byte: rewritten
            os.ftruncate(self._fd, plan.offset)
            self._kept = plan.offset
        os.lseek(self._fd, plan.offset, os.SEEK_SET)
        if plan.total is not None:
            RESERVATIONS.reserve(
                self._fd,
                id(self),
                plan.total - plan.offset,
                functools.partial(self._still_needed, plan.total),
                filename=self.identity.filename,
                folder=str(self.dest.parent),
            )

    def _still_needed(self, total: int) -> int:
        return total - self.kept

    def _restart(self, size: int | None, why: str | None) -> None:
        """Empty the partial and record ``size`` (thread)."""
        if why is not None and self._kept:
            log.debug("discarding %d bytes of %s: %s", self._kept, self.path, why)
        if self._kept:
            os.ftruncate(self._fd, 0)
            self._kept = 0
        if self._record.size != size:
            self._record = attrs.evolve(self._record, size=size)
            self._write_record()

    def _write_record(self) -> None:
        names, filename = self.names, self.identity.filename
        _write_record(self._dir_fd, names.record, self._record, filename=filename)

    def _drop_writer(self) -> None:
        """The last writer is done (no write in flight): what it wrote is what is kept."""
        self._writer, self._kept = None, self.kept

    async def restart(self) -> None:
        """Empty the partial: the next attempt asks for the whole file."""
        self._drop_writer()
        await self._jobs.run(self._restart, None, "the server cannot serve its range")

    async def no_space(self, error: OSError) -> InsufficientSpaceError:
        """Delete the partial after ``error`` (out of space); the named error to raise."""
        needed = (self._record.size or 0) - self.kept
        self._drop_writer()
        free = await self._jobs.run(self._delete)
        named = InsufficientSpaceError(
            self.identity.filename, str(self.dest.parent), max(needed, 0), free
        )
        named.__cause__ = error
        return named

    def _delete(self) -> int:
        """Remove the partial and its record, releasing their space; the free bytes then."""
        os.ftruncate(self._fd, 0)  # the space goes now, not when the descriptor is closed
        self._kept = 0
        _unlink_names(self._dir_fd, self.names)
        return free_bytes(self._fd)

    async def publish(self, *, size: int, overwrite: bool, fsync: bool) -> None:
        """Put the partial under the final name, once it holds exactly ``size`` bytes.

        With ``fsync`` the data is flushed first and the folder after. Without ``overwrite``
        an existing file is never replaced (``FileExistsError``, the partial is kept). The
        final name is then checked to be this very file; a cancellation before the rename
        leaves the partial as it is.
        """
        self._drop_writer()
        if fsync:
            await self._jobs.run(os.fsync, self._fd)
        await self._jobs.run(self._publish, size, overwrite, fsync)

    def _publish(self, size: int, overwrite: bool, fsync: bool) -> None:
        own = os.fstat(self._fd)
        if own.st_size != size:
            raise IncompleteTransferError(
                f"{self.identity.filename}: the partial file holds {own.st_size} bytes, "
                f"{size} were received (changed by something else?)"
            )
        final, part, folder = self.dest.name, self.names.part, self._dir_fd
        if overwrite:
            os.rename(part, final, src_dir_fd=folder, dst_dir_fd=folder)
        else:
            _rename_no_clobber(folder, part, final, self.dest)
        now = os.stat(final, dir_fd=folder, follow_symlinks=False)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (own.st_dev, own.st_ino):
            raise UnsafePathError(self.identity.filename, "it was replaced right after its rename")
        self._published = True
        remove_record(folder, self.names.record)
        if fsync:
            with _unsupported():
                os.fsync(folder)

    async def close(self) -> None:
        """Release the partial (and its lock) once the thread job under way, if any, ends; an
        empty one is removed with its record (a failure keeps a partial only with bytes)."""
        if self._closed:
            return
        self._closed = True
        RESERVATIONS.release(id(self))
        try:
            await self._jobs.wait()
            # in a thread: ext4 flushes a file on its close after a truncate (auto_da_alloc)
            await self._jobs.run(self._release)
        finally:
            self._jobs.close(self._release)  # cancelled meanwhile: once the job under way ends

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        _let_go(self._dir_fd, self._fd, self.names, empty=not self._published and self.kept == 0)


def _let_go(dir_fd: int, fd: int, names: PartNames, *, empty: bool) -> None:
    """Close the partial (dropping its lock) and its folder; an ``empty`` partial is removed
    first, with its record (a partial is kept only with bytes to resume)."""
    try:
        if empty:
            with contextlib.suppress(OSError):
                _unlink_names(dir_fd, names)
    finally:
        os.close(fd)
        os.close(dir_fd)


def _unlink_names(dir_fd: int, names: PartNames) -> None:
    for name in (names.part, names.record):
        with _gone_already():
            os.unlink(name, dir_fd=dir_fd)


def _claim(
    root: Path, parts: tuple[str, ...], dest: Path, identity: PartIdentity, overwrite: bool
) -> _Claimed:
    """Open the folder and own the partial in it (the thread job of :meth:`Partial.claim`)."""
    dir_fd = open_folder(root, parts, filename=identity.filename)
    try:
        if not overwrite and _exists(dir_fd, dest.name):
            raise _exists_error(dest)
        names = part_names(dest.name, name_max(dir_fd))
        fd = _open_locked(dir_fd, names, dest.with_name(names.part), identity.filename)
    except BaseException:
        os.close(dir_fd)
        raise
    try:
        record, kept = _bound_record(dir_fd, fd, names, identity)
    except BaseException:  # a full disk, say: an empty partial is not left behind
        _let_go(dir_fd, fd, names, empty=os.fstat(fd).st_size == 0)
        raise
    return _Claimed(dir_fd, fd, names, record, kept)


def _open_locked(dir_fd: int, names: PartNames, path: Path, filename: str) -> int:
    """Open the partial (made if missing) and lock it, or raise DownloadInProgressError."""
    for _ in range(_CLAIM_TRIES):
        fd = open_owned(dir_fd, names.part, os.O_WRONLY | os.O_CREAT, filename=filename,
                        what="partial file")  # fmt: skip
        try:
            if not _lock(fd):
                raise DownloadInProgressError(str(path), _holder(dir_fd, names, filename))
            if _is_named(dir_fd, names.part, fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its owner published or removed it before we locked it: open the new one
    raise DownloadInProgressError(str(path), "other downloads that keep replacing it")


if sys.platform == "win32":  # pragma: no cover - no flock, no O_NOFOLLOW, no dir_fd there

    def _lock(fd: int) -> bool:
        raise OSError("downloads need a POSIX system (flock, O_NOFOLLOW)")

else:
    import fcntl

    def _lock(fd: int) -> bool:
        """Take the exclusive lock on ``fd`` (an open file description: other descriptors of
        this process are excluded too); False when another download holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _bound_record(
    dir_fd: int, fd: int, names: PartNames, identity: PartIdentity
) -> tuple[PartRecord, int]:
    """The record of this download, and the bytes of the partial kept for it: the partial is
    emptied unless its record names this server file with a size it does not exceed."""
    found = read_record(dir_fd, names.record, filename=identity.filename)
    kept = os.fstat(fd).st_size
    size = found.size if found is not None and found.names(identity) else None
    if size is None or kept > size:
        if kept:
            why = "no record" if found is None else f"its record is of {found}"
            log.debug("discarding %d bytes of partial %s: %s", kept, names.part, why)
            os.ftruncate(fd, 0)
        kept, size = 0, None
    record = PartRecord.for_this_process(identity, size)
    _write_record(dir_fd, names.record, record, filename=identity.filename)
    return record, kept


def _holder(dir_fd: int, names: PartNames, filename: str) -> str:
    try:
        record = read_record(dir_fd, names.record, filename=filename)
    except (OSError, UnsafePathError):
        record = None
    return record.holder() if record is not None else "another download"


def _exists_error(dest: Path) -> FileExistsError:
    return FileExistsError(f"{dest} exists; pass overwrite=True to replace it")


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_named(dir_fd: int, name: str, fd: int) -> bool:
    """Whether ``name`` in ``dir_fd`` is still the file open as ``fd``."""
    try:
        named = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (own.st_dev, own.st_ino)


def _rename_no_clobber(dir_fd: int, part: str, final: str, dest: Path) -> None:
    """Rename refusing an existing ``final`` atomically where hard links work."""
    try:
        os.link(part, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise _exists_error(dest) from None
    except OSError:  # no hard links here (some FUSE/SMB mounts): check, then replace
        if _exists(dir_fd, final):
            raise _exists_error(dest) from None
        os.rename(part, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(part, dir_fd=dir_fd)


def is_out_of_space(error: BaseException) -> bool:
    """Whether ``error`` is a write or fsync that ran out of space."""
    return isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS


def _gone_already() -> contextlib.AbstractContextManager[None]:
    return contextlib.suppress(FileNotFoundError)


def _unsupported() -> contextlib.AbstractContextManager[None]:
    return contextlib.suppress(OSError)  # fsync of a folder: not supported everywhere
