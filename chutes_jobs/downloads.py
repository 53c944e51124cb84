"""Downloading a job's output files: retried, resumed, owned, proven, bounded in concurrency.

One file goes to its partial file (``name.part``, see :mod:`chutes_jobs.transfer.partial`):
owned by this download alone, bound to its server file, renamed into place only once its bytes
are proven complete. Retries follow the session's :class:`~chutes_jobs.RetryPolicy` for
transfers, with progress measured by the bytes the partial holds: an attempt that leaves it
longer than any attempt before renews the budget (attempt count and deadline;
:meth:`RetryPolicy.run`'s ``progress``). A multi-GB file over a link that drops now and then
still arrives; a failure that keeps happening at the same spot still ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
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
    Partial,
    PartIdentity,
    ProgressCallback,
    check_complete,
    is_out_of_space,
    part_names,
    plan_body,
    safe_destination,
    stream_to_part,
)
from .transfer.files import DEFAULT_NAME_MAX

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
    root: Path | None = None,
) -> Path:
    """Download ``file`` into its partial file, resuming across retries, then publish it as
    ``dest``. ``root``: the destination folder ``dest`` lies under (no link followed below
    it); by default ``dest``'s own folder. The instrumentation hooks see it as one
    ``download`` operation and transfer."""
    identity = PartIdentity(job_id, file.file_id, file.filename)
    url = session.url(download_path(job_id, file.file_id))
    partial = await Partial.claim(root or dest.parent, dest, identity, overwrite=overwrite)
    try:
        async with TransferWatch(
            session.hooks, "download", job_id, file.filename, dest, measure=partial.progress
        ) as watch:
            await _download_into(session, url, partial, watch, progress, overwrite, fsync)
    finally:
        await partial.close()
    return dest


async def _download_into(
    session: Transport,
    url: yarl.URL,
    partial: Partial,
    watch: TransferWatch,
    progress: ProgressCallback | None,
    overwrite: bool,
    fsync: bool,
) -> None:
    """The retried attempts of one download, then its publication."""
    progress = watch.progress(progress)

    async def attempt(number: int) -> int:
        try:
            start, end = await _fetch_into(session, url, partial, progress, number)
        except APIStatusError as exc:
            if exc.status != RANGE_NOT_SATISFIABLE:
                raise
            log.info("stale partial download of %s, starting over", partial.identity.filename)
            await partial.restart()
            start, end = await _fetch_into(session, url, partial, progress, number)
        watch.attempt_done(start, end)
        return end

    try:
        size = await session.retry_policy.run(
            CallKind.TRANSFER, attempt, progress=partial.progress, hooks=session.hooks
        )
        await partial.publish(size=size, overwrite=overwrite, fsync=fsync)
    except OSError as exc:
        if not is_out_of_space(exc):
            raise
        raise await partial.no_space(exc) from None


async def _fetch_into(
    session: Transport,
    url: yarl.URL,
    partial: Partial,
    progress: ProgressCallback | None,
    attempt: int,
) -> tuple[int, int]:
    """One GET written into the partial from where it should continue: where this attempt
    started in the file, and the file's size once it ended."""
    requested = partial.resume_from
    # Byte counts and Range offsets must mean bytes of the file, not of a compressed stream.
    headers = {"Accept-Encoding": "identity"}
    if requested:
        headers["Range"] = f"bytes={requested}-"
    filename = partial.identity.filename
    async with session.send_once(
        "GET", url, headers=headers, timeout=session.transfer_timeout, attempt=attempt
    ) as response:
        plan = plan_body(response, requested)
        writer = await partial.begin(plan)
        end = await stream_to_part(
            response, writer, plan=plan, filename=filename, progress=progress
        )
    check_complete(plan, end, filename)
    return plan.offset, end


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
    files = list(job.output_files.values())
    root, temp_names = await asyncio.to_thread(_layout, dest_dir, [f.filename for f in files])

    async def one(file: OutputFile) -> None:
        try:
            _refuse_temp_name(file.filename, temp_names)
            dest = await asyncio.to_thread(_destination, root, file)
            async with gate:
                downloaded[file.filename] = await download_file(
                    session,
                    job.job_id,
                    file,
                    dest,
                    progress=progress,
                    overwrite=overwrite,
                    fsync=fsync,
                    root=root,
                )
        except (ChutesError, OSError) as exc:
            exc.add_note(f"output file: {file.filename!r}")
            log.warning("download of %r failed: %s", file.filename, exc)
            errors.append(exc)

    async with asyncio.TaskGroup() as group:
        for file in files:
            group.create_task(one(file))
    if errors:
        raise DownloadOutputsError(
            f"{len(errors)} of {len(files)} output file(s) of job {job.job_id} failed",
            errors,
            downloaded=downloaded,
        )
    return downloaded


def _layout(dest_dir: Path, filenames: Iterable[str]) -> tuple[Path, dict[str, str]]:
    """The destination folder, resolved, and ``{path of a partial or record: its output}``
    for every output (it resolves paths, so it runs in a thread)."""
    root = dest_dir.resolve()
    try:
        limit = int(os.pathconf(root, "PC_NAME_MAX"))
    except (OSError, ValueError):  # not made yet, or no limit to tell
        limit = DEFAULT_NAME_MAX
    temp_names: dict[str, str] = {}
    for filename in filenames:
        folder, _, name = filename.rpartition("/")
        names = part_names(name, limit)
        for temp in (names.part, names.record):
            temp_names[f"{folder}/{temp}" if folder else temp] = filename
    return root, temp_names


def _refuse_temp_name(filename: str, temp_names: dict[str, str]) -> None:
    """An output named like another one's partial file or record would be written over."""
    owner = temp_names.get(filename)
    if owner is not None and owner != filename:
        raise UnsafePathError(
            filename,
            f"it is where {owner!r}, another output, keeps its partial download until renamed",
        )


def _destination(root: Path, file: OutputFile) -> Path:
    """Where ``file`` goes (it resolves paths, so it runs in a thread)."""
    dest = safe_destination(root, file.filename)
    if not file.uploaded:
        raise OutputMissingError(file.filename)
    return dest
