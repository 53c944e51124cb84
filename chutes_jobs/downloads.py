"""Downloading a job's output files: retried, resumed, atomic, bounded in concurrency.

One file goes to ``name.part`` (see :mod:`chutes_jobs.transfer`) and is renamed once complete.
Retries follow the session's :class:`~chutes_jobs.RetryPolicy` for transfers, with progress
measured by the ``.part`` file's size: an attempt that leaves it longer than any attempt before
renews the budget (attempt count and deadline; :meth:`RetryPolicy.run`'s ``progress``). A
multi-GB file over a link that drops now and then still arrives; a failure that keeps happening
at the same spot still ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import yarl

from .errors import (
    APIStatusError,
    ChutesError,
    DownloadOutputsError,
    OutputMissingError,
    UnsafePathError,
)
from .instrumentation.scopes import TransferWatch
from .models import Job, OutputFile
from .retry import CallKind
from .transfer import (
    PART_SUFFIX,
    ProgressCallback,
    check_complete,
    expected_total,
    finalize,
    part_path_for,
    range_header_for,
    requested_offset,
    resume_offset,
    safe_destination,
    stream_to_part,
)

if TYPE_CHECKING:
    from ._http import Transport

__all__ = ["download_all", "download_file", "download_path"]

log = logging.getLogger("chutes_jobs")

RANGE_NOT_SATISFIABLE = 416


def download_path(job_id: str, file_id: str) -> str:
    """The API path of one output file."""
    return f"/jobs/{quote(job_id, safe='')}/download/{quote(file_id, safe='')}"


async def download_file(
    session: Transport,
    job_id: str,
    file: OutputFile,
    dest: Path,
    *,
    progress: ProgressCallback | None,
    overwrite: bool,
    fsync: bool = True,
) -> Path:
    """Stream ``file`` into ``dest.part``, resuming across retries, then rename it to ``dest``.

    The instrumentation hooks see it as one ``download`` operation and transfer.
    """
    measure = functools.partial(_part_size, part_path_for(dest))
    async with TransferWatch(
        session.hooks, "download", job_id, file.filename, dest, measure=measure
    ) as watch:
        return await _download_file(
            session, job_id, file, dest, watch=watch, progress=progress, overwrite=overwrite,
            fsync=fsync,
        )  # fmt: skip


async def _download_file(
    session: Transport,
    job_id: str,
    file: OutputFile,
    dest: Path,
    *,
    watch: TransferWatch,
    progress: ProgressCallback | None,
    overwrite: bool,
    fsync: bool,
) -> Path:
    if not overwrite and await asyncio.to_thread(dest.exists):
        raise FileExistsError(f"{dest} exists; pass overwrite=True to replace it")
    part = part_path_for(dest)
    url = session.url(download_path(job_id, file.file_id))
    progress = watch.progress(progress)

    async def attempt(number: int) -> None:
        try:
            reached = await _fetch_into(session, url, part, file.filename, progress, number)
        except APIStatusError as exc:
            if exc.status != RANGE_NOT_SATISFIABLE:
                raise
            log.info("stale partial download of %s, starting over", file.filename)
            await asyncio.to_thread(part.unlink, True)
            reached = await _fetch_into(session, url, part, file.filename, progress, number)
        watch.attempt_done(*reached)

    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    await session.retry_policy.run(
        CallKind.TRANSFER, attempt, progress=lambda: _part_size(part), hooks=session.hooks
    )
    await finalize(part, dest, overwrite=overwrite, fsync=fsync)
    return dest


async def _fetch_into(
    session: Transport,
    url: yarl.URL,
    part: Path,
    filename: str,
    progress: ProgressCallback | None,
    attempt: int,
) -> tuple[int, int]:
    """One GET, appended to the ``.part`` from where it ends (or from zero on a 200).

    Returns where this attempt started in the file and the file's size once it ended.
    """
    headers = await asyncio.to_thread(range_header_for, part)
    # Byte counts and Range offsets must mean bytes of the file, not of a compressed stream.
    headers["Accept-Encoding"] = "identity"
    async with session.send_once(
        "GET", url, headers=headers, timeout=session.transfer_timeout, attempt=attempt
    ) as response:
        offset = resume_offset(response, requested_offset(headers))
        total = expected_total(response, offset)
        size = await stream_to_part(
            response, part, offset=offset, filename=filename, progress=progress
        )
    await asyncio.to_thread(check_complete, part, total)
    return offset, size


async def _part_size(part: Path) -> int:
    """How many bytes the ``.part`` holds: the progress of a download's attempts."""
    try:
        stat = await asyncio.to_thread(part.stat)
    except FileNotFoundError:
        return 0
    return stat.st_size


async def download_all(
    session: Transport,
    job: Job,
    dest_dir: Path,
    *,
    concurrency: int,
    progress: ProgressCallback | None,
    overwrite: bool,
    fsync: bool = True,
) -> dict[str, Path]:
    """Download every output of ``job`` under ``dest_dir``; collect per-file failures."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    gate = asyncio.Semaphore(concurrency)
    downloaded: dict[str, Path] = {}
    errors: list[Exception] = []
    names = {f.filename for f in job.output_files.values()}

    async def one(file: OutputFile) -> None:
        try:
            _refuse_part_collision(file.filename, names)
            dest = await asyncio.to_thread(_destination, dest_dir, file)
            async with gate:
                downloaded[file.filename] = await download_file(
                    session,
                    job.job_id,
                    file,
                    dest,
                    progress=progress,
                    overwrite=overwrite,
                    fsync=fsync,
                )
        except (ChutesError, OSError) as exc:
            exc.add_note(f"output file: {file.filename!r}")
            log.warning("download of %r failed: %s", file.filename, exc)
            errors.append(exc)

    async with asyncio.TaskGroup() as group:
        for file in job.output_files.values():
            group.create_task(one(file))
    if errors:
        raise DownloadOutputsError(
            f"{len(errors)} of {len(job.output_files)} output file(s) of job {job.job_id} failed",
            errors,
            downloaded=downloaded,
        )
    return downloaded


def _refuse_part_collision(filename: str, names: set[str]) -> None:
    """``x.part`` next to ``x`` would be written over by the partial download of ``x``."""
    if filename.endswith(PART_SUFFIX) and filename[: -len(PART_SUFFIX)] in names:
        raise UnsafePathError(
            filename,
            f"it is where {filename[: -len(PART_SUFFIX)]!r}, another output, is downloaded to "
            "before its rename",
        )


def _destination(dest_dir: Path, file: OutputFile) -> Path:
    """Where ``file`` goes (it resolves paths, so it runs in a thread)."""
    dest = safe_destination(dest_dir, file.filename)
    if not file.uploaded:
        raise OutputMissingError(file.filename)
    return dest
