"""Downloading outputs, end to end on the emulator over loopback HTTP.

What a user sees on disk: the right bytes under the right names, never a half file under a
final name, resume after a dropped connection, unsafe names refused while the rest lands.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from chutes_jobs import (
    ChutesSession,
    IncompleteTransferError,
    Job,
    RetryPolicy,
    ServerError,
    TransportError,
    UnsafePathError,
)
from chutes_jobs.demo import sha256_file
from chutes_jobs.emulator import Emulator
from chutes_jobs.errors import DownloadOutputsError, OutputMissingError
from chutes_jobs.job import JobHandle
from chutes_jobs.polling import PollPolicy
from chutes_jobs.transfer import TransferProgress

MIB = 1024 * 1024
FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.02)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})  # jobs finished by the test, as the worker
        yield emulator


def session_for(emu: Emulator, **retry: Any) -> ChutesSession:
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, **retry) if retry else FAST_RETRY
    return ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy)


@pytest_asyncio.fixture
async def session(emu: Emulator) -> AsyncIterator[ChutesSession]:
    async with session_for(emu) as s:
        yield s


async def files_job(session: ChutesSession, sizes: list[int]) -> tuple[JobHandle, Job]:
    handle = await session.create_job("demo", "files", {"sizes": sizes})
    return handle, await handle.wait(poll=FAST_POLL)


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def range_offsets(emu: Emulator) -> list[int | None]:
    """The offset each download request asked for with ``Range`` (None: no Range)."""
    offsets: list[int | None] = []
    for request in emu.requests:
        if request.route == "download":
            value = request.headers.get("Range")
            offsets.append(None if value is None else int(value[len("bytes=") : -1]))
    return offsets


class Progress:
    """Records every progress report, per file."""

    def __init__(self) -> None:
        self.reports: dict[str, list[TransferProgress]] = defaultdict(list)

    def __call__(self, report: TransferProgress) -> None:
        self.reports[report.filename].append(report)

    def assert_monotone_and_complete(self, sizes: dict[str, int]) -> None:
        assert set(self.reports) == set(sizes)
        for name, reports in self.reports.items():
            done = [r.done for r in reports]
            assert done == sorted(done), name
            assert reports[-1].done == reports[-1].total == sizes[name]


# ----------------------------------------------------------------------------- all outputs


async def test_download_outputs_lands_every_file_intact(
    session: ChutesSession, tmp_path: Path
) -> None:
    handle, job = await files_job(session, [1000, 64 * MIB, 70_000])
    expected: dict[str, str] = job.result["files"]
    assert sorted(expected) == ["file_000.bin", "file_001.bin", "sub/file_002.bin"]
    progress = Progress()

    paths = await handle.download_outputs(tmp_path / "out", progress=progress)

    assert paths == {name: tmp_path / "out" / name for name in expected}
    for name, path in paths.items():
        assert await asyncio.to_thread(sha256_file, path) == expected[name]
    assert tree(tmp_path) == sorted(f"out/{name}" for name in expected)  # no .part left
    progress.assert_monotone_and_complete(
        {"file_000.bin": 1000, "file_001.bin": 64 * MIB, "sub/file_002.bin": 70_000}
    )


async def test_no_clobber_unless_overwrite(session: ChutesSession, tmp_path: Path) -> None:
    handle, job = await files_job(session, [3000, 5000])
    out = tmp_path / "out"
    await handle.download_outputs(out)
    (out / "file_000.bin").write_bytes(b"mine")

    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(out)
    exists, rest = caught.value.split(FileExistsError)
    assert rest is None and exists is not None and len(exists.exceptions) == 2
    assert caught.value.downloaded == {}
    assert (out / "file_000.bin").read_bytes() == b"mine"
    with pytest.raises(FileExistsError):
        await handle.download("file_000.bin", out / "file_000.bin")

    paths = await handle.download_outputs(out, overwrite=True)
    for name, path in paths.items():
        assert sha256_file(path) == job.result["files"][name]
    assert tree(out) == ["file_000.bin", "sub/file_001.bin"]


async def test_empty_file_and_no_outputs(session: ChutesSession, tmp_path: Path) -> None:
    handle, _ = await files_job(session, [0])
    paths = await handle.download_outputs(tmp_path)
    assert paths["file_000.bin"].read_bytes() == b""
    echo = await session.create_job("demo", "echo")
    await echo.wait(poll=FAST_POLL)
    assert await echo.download_outputs(tmp_path / "none") == {}


# ----------------------------------------------------------------------------- resume


async def test_cut_connection_resumes_with_range(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    handle, job = await files_job(session, [12 * MIB])
    emu.faults.add("download", cut_after=5 * MIB)
    progress = Progress()

    path = await handle.download("file_000.bin", tmp_path / "f.bin", progress=progress)

    assert sha256_file(path) == job.result["files"]["file_000.bin"]
    first, resumed = range_offsets(emu)
    assert first is None and resumed is not None and 0 < resumed <= 5 * MIB
    progress.assert_monotone_and_complete({"file_000.bin": 12 * MIB})
    assert tree(tmp_path) == ["f.bin"]
    # Offsets count bytes of the file: every attempt refuses a compressed stream.
    downloads = [r for r in emu.requests if r.route == "download"]
    assert [r.headers.get("Accept-Encoding") for r in downloads] == ["identity", "identity"]


@pytest.mark.parametrize("options", [{"range_support": False}, {"live_quirks": True}])
async def test_without_range_support_the_download_restarts(
    options: dict[str, Any], tmp_path: Path
) -> None:
    async with Emulator(schedule_delay=0.01, **options) as emu, session_for(emu) as session:
        handle, job = await files_job(session, [12 * MIB])
        emu.faults.add("download", cut_after=5 * MIB)
        path = await handle.download("file_000.bin", tmp_path / "f.bin")
        assert sha256_file(path) == job.result["files"]["file_000.bin"]
        first, second = range_offsets(emu)
        assert first is None and second is not None  # asked to resume, got 200: restarted
        assert path.stat().st_size == 12 * MIB
        assert tree(tmp_path) == ["f.bin"]


async def test_short_body_is_detected_and_retried(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    handle, job = await files_job(session, [3 * MIB])
    emu.faults.add("download", short_body=1000)
    path = await handle.download("file_000.bin", tmp_path / "f.bin")
    assert sha256_file(path) == job.result["files"]["file_000.bin"]
    assert len(range_offsets(emu)) == 2


async def test_short_body_is_an_incomplete_transfer(emu: Emulator, tmp_path: Path) -> None:
    async with session_for(emu, max_attempts=1) as session:
        handle, _ = await files_job(session, [3 * MIB])
        emu.faults.add("download", short_body=1000)
        with pytest.raises(IncompleteTransferError):
            await handle.download("file_000.bin", tmp_path / "f.bin")
        assert not (tmp_path / "f.bin").exists()


async def test_persistent_failure_exhausts_the_retries(emu: Emulator, tmp_path: Path) -> None:
    async with session_for(emu, max_attempts=3) as session:
        handle, _ = await files_job(session, [3 * MIB])
        emu.faults.add("download", short_body=1000, times=None)
        with pytest.raises(TransportError) as caught:
            await handle.download("file_000.bin", tmp_path / "f.bin")
        assert caught.value.attempts == 3 == len(range_offsets(emu))
        assert not (tmp_path / "f.bin").exists()
        # what arrived stays for a later resume (with its record), never under the final name
        assert tree(tmp_path) == ["f.bin.part", "f.bin.part.json"]


async def test_server_errors_exhaust_the_retries(emu: Emulator, tmp_path: Path) -> None:
    async with session_for(emu, max_attempts=2) as session:
        handle, _ = await files_job(session, [1000])
        emu.faults.add("download", status=503, times=None)
        with pytest.raises(ServerError) as caught:
            await handle.download("file_000.bin", tmp_path / "f.bin")
        assert caught.value.attempts == 2
        assert tree(tmp_path) == []


async def test_progress_renews_the_retry_budget(emu: Emulator, tmp_path: Path) -> None:
    """A link that drops again and again still delivers, as long as each attempt gets further."""
    async with session_for(emu, max_attempts=2) as session:
        handle, job = await files_job(session, [20 * MIB])
        emu.faults.add("download", cut_after=6 * MIB, times=None)
        path = await handle.download("file_000.bin", tmp_path / "f.bin")
        assert sha256_file(path) == job.result["files"]["file_000.bin"]
        offsets = range_offsets(emu)
        assert len(offsets) > 2  # more attempts than max_attempts: each one made progress
        assert offsets[1:] == sorted(o or 0 for o in offsets[1:])


async def test_cancelled_download_leaves_no_final_file_and_resumes(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    handle, job = await files_job(session, [24 * MIB])
    dest = tmp_path / "f.bin"
    task: asyncio.Task[Path] | None = None

    def cancel_midway(report: TransferProgress) -> None:
        if report.done >= 6 * MIB and task is not None:
            task.cancel()

    task = asyncio.create_task(handle.download("file_000.bin", dest, progress=cancel_midway))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dest.exists()
    kept = (tmp_path / "f.bin.part").stat().st_size
    assert 0 < kept < 24 * MIB

    path = await handle.download("file_000.bin", dest)
    assert sha256_file(path) == job.result["files"]["file_000.bin"]
    assert range_offsets(emu)[-1] == kept
    assert tree(tmp_path) == ["f.bin"]


# ----------------------------------------------------------------------------- unsafe names


class RawWorker:
    """The worker protocol spoken with plain aiohttp: no client-side checks on names."""

    def __init__(self, emu: Emulator, http: aiohttp.ClientSession, job_id: str) -> None:
        self.status_url = emu.job_status_url(job_id)
        self.http = http

    async def finish(self, names: list[str]) -> dict[str, str]:
        body = {"status": "complete", "result": {}, "output_filenames": names}
        async with self.http.post(self.status_url, data=json.dumps(body).encode()) as answer:
            assert answer.status == 200, await answer.text()
            urls: dict[str, str] = (await answer.json())["output_storage_urls"]
            return urls

    async def upload(self, url: str, name: str, data: bytes) -> None:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="f.bin")
        form.add_field("path", name)
        async with self.http.put(url, data=form) as answer:
            await answer.read()  # an odd name may be refused: the client refuses it anyway

    async def complete(self) -> None:
        async with self.http.put(self.status_url, json={"status": "done"}) as answer:
            assert answer.status == 200, await answer.text()


async def finish_as_worker(
    emu: Emulator, job_id: str, files: dict[str, bytes], *, upload: bool = True
) -> None:
    """Finish ``job_id`` as its worker, listing (and uploading) ``files``, then complete."""
    async with aiohttp.ClientSession() as http:
        worker = RawWorker(emu, http, job_id)
        urls = await worker.finish(list(files))
        for name, url in urls.items() if upload else ():
            await worker.upload(url, name, files[name])
        await worker.complete()


UNSAFE = ["../escape.txt", "/etc/x", "C:\\x", "C:x", "a\x00b", "sub/../../up.txt", "./dot"]


async def test_unsafe_names_are_refused_and_the_others_land(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    handle = await session.create_job("ext", "run")
    files = {name: name.encode() for name in [*UNSAFE, "ok.txt", "sub/ok2.txt"]}
    await finish_as_worker(emu, handle.id, files)
    out = tmp_path / "out"

    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(out)

    unsafe, rest = caught.value.split(UnsafePathError)
    assert rest is None and unsafe is not None
    errors = [e for e in unsafe.exceptions if isinstance(e, UnsafePathError)]
    assert {e.filename for e in errors} == set(UNSAFE)
    for error in errors:
        assert any(repr(error.filename) in note for note in error.__notes__)
    assert caught.value.downloaded == {"ok.txt": out / "ok.txt", "sub/ok2.txt": out / "sub/ok2.txt"}
    assert (out / "sub/ok2.txt").read_bytes() == b"sub/ok2.txt"
    assert tree(tmp_path) == ["out/ok.txt", "out/sub/ok2.txt"]  # nothing outside out/
    assert [r.route for r in emu.requests if r.route == "download"] == ["download"] * 2


async def test_a_symlink_out_of_the_destination_is_refused(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    handle = await session.create_job("ext", "run")
    await finish_as_worker(emu, handle.id, {"link/x.txt": b"x", "y.txt": b"y"})
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside)

    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(out)
    assert [type(e) for e in caught.value.exceptions] == [UnsafePathError]
    assert list(outside.iterdir()) == []
    assert (out / "y.txt").read_bytes() == b"y"


async def test_an_output_named_like_a_partial_download_is_refused(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    handle = await session.create_job("ext", "run")
    await finish_as_worker(emu, handle.id, {"a.bin": b"a" * 5000, "a.bin.part": b"p"})
    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(tmp_path)
    (error,) = caught.value.exceptions
    assert isinstance(error, UnsafePathError) and error.filename == "a.bin.part"
    assert tree(tmp_path) == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"a" * 5000


async def test_a_file_never_uploaded_is_reported_not_fetched(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    handle = await session.create_job("ext", "run")
    await finish_as_worker(emu, handle.id, {"gone.txt": b"g"}, upload=False)

    with pytest.raises(OutputMissingError, match=r"gone\.txt"):
        await handle.download("gone.txt", tmp_path / "gone.txt")
    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(tmp_path)
    assert [type(e) for e in caught.value.exceptions] == [OutputMissingError]
    assert emu.counts["download"] == 0
    assert tree(tmp_path) == []


async def test_download_refreshes_a_stale_snapshot(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    """A handle whose last snapshot predates the upload still finds the file."""
    handle = await session.create_job("ext", "run")
    async with aiohttp.ClientSession() as http:
        worker = RawWorker(emu, http, handle.id)
        urls = await worker.finish(["late.txt"])
        stale = await handle.refresh()
        assert [f.uploaded for f in stale.output_files.values()] == [False]
        await worker.upload(urls["late.txt"], "late.txt", b"late")
        await worker.complete()
    path = await handle.download("late.txt", tmp_path / "late.txt")
    assert path.read_bytes() == b"late"
    assert handle.job is not None and handle.job.is_finished
