"""A file under its final name is exactly the server's file (issue 12), end to end on the
emulator: a partial belongs to one download of one server file, nothing is written through a
link, names always fit, a file that cannot fit fails alone, descriptors never leak."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from chutes_jobs import (
    ChutesSession,
    DownloadInProgressError,
    DownloadOutputsError,
    IncompleteTransferError,
    InsufficientSpaceError,
    RetryPolicy,
    UnsafePathError,
)
from chutes_jobs import downloads as downloads_module
from chutes_jobs.demo import sha256_file
from chutes_jobs.emulator import Emulator
from chutes_jobs.emulator import downloads as emulator_downloads
from chutes_jobs.job import JobHandle
from chutes_jobs.polling import PollPolicy
from chutes_jobs.transfer import part_names, partial, upload

MIB = 1024 * 1024
FAST_POLL = PollPolicy(initial=0.01, maximum=0.05)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})  # jobs finished by the test, as the worker
        yield emulator


def session_for(emu: Emulator, **retry: Any) -> ChutesSession:
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, **retry)
    return ChutesSession(base_url=emu.base_url, api_key=emu.api_key, retry_policy=policy)


@pytest_asyncio.fixture
async def session(emu: Emulator) -> AsyncIterator[ChutesSession]:
    async with session_for(emu) as s:
        yield s


async def files_job(
    session: ChutesSession, sizes: list[int], seed: int = 0
) -> tuple[JobHandle, dict[str, str]]:
    """A finished demo job with outputs of ``sizes``; its ``{filename: sha256}``."""
    handle = await session.create_job("demo", "files", {"sizes": sizes, "seed": seed})
    job = await handle.wait(poll=FAST_POLL)
    return handle, job.result["files"]


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


def range_headers(emu: Emulator, job_id: str) -> list[str | None]:
    return [
        r.headers.get("Range")
        for r in emu.requests
        if r.route == "download" and r.path.startswith(f"/jobs/{job_id}/")
    ]


class Gate:
    """Emulator downloads send ``hold_at`` bytes, then wait until :meth:`open` (in this loop)."""

    def __init__(self, hold_at: int) -> None:
        self.hold_at = hold_at
        self.opened = asyncio.Event()
        self.holding = asyncio.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = emulator_downloads._copy

        async def gated(request: Any, response: Any, path: Path, offset: int, count: int) -> None:
            if offset >= self.hold_at or count <= self.hold_at - offset:
                await original(request, response, path, offset, count)
                return
            first = self.hold_at - offset
            await original(request, response, path, offset, first)
            self.holding.set()
            await self.opened.wait()
            await original(request, response, path, self.hold_at, count - first)

        monkeypatch.setattr(emulator_downloads, "_copy", gated)


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition()`` holds (pytest-timeout guards a hang)."""
    while not condition():
        await asyncio.sleep(0.005)


# ----------------------------------------------------------------------------- case 1


async def test_another_jobs_partial_is_never_resumed(emu: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with session_for(emu, max_attempts=1) as session:
        job_a, _ = await files_job(session, [2 * MIB], seed=1)
        job_b, expected_b = await files_job(session, [3 * MIB], seed=2)
        emu.faults.add("download", cut_after=1 << 20)
        with pytest.raises(DownloadOutputsError):
            await job_a.download_outputs(out)
        assert (out / "file_000.bin.part").stat().st_size == 1 << 20  # A's partial

        paths = await job_b.download_outputs(out)

    assert sha256_file(paths["file_000.bin"]) == expected_b["file_000.bin"]
    assert range_headers(emu, job_b.id) == [None]  # A's bytes were not resumed
    assert tree(out) == ["file_000.bin"]


async def test_the_same_jobs_partial_is_resumed(emu: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with session_for(emu, max_attempts=1) as session:
        job, expected = await files_job(session, [2 * MIB], seed=1)
        emu.faults.add("download", cut_after=1 << 20)
        with pytest.raises(DownloadOutputsError):
            await job.download_outputs(out)
        paths = await job.download_outputs(out)
    assert sha256_file(paths["file_000.bin"]) == expected["file_000.bin"]
    assert range_headers(emu, job.id) == [None, f"bytes={1 << 20}-"]


# ----------------------------------------------------------------------------- case 2


@pytest.mark.parametrize("range_support", [False, True])
async def test_a_second_download_to_the_same_path_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, range_support: bool
) -> None:
    gate = Gate(hold_at=8 * MIB)
    gate.install(monkeypatch)
    dest = tmp_path / "f.bin"
    async with (
        Emulator(schedule_delay=0.01, range_support=range_support) as emu,
        session_for(emu) as session,
    ):
        job, expected = await files_job(session, [16 * MIB])
        first = asyncio.create_task(job.download("file_000.bin", dest))
        await gate.holding.wait()
        await until(lambda: (tmp_path / "f.bin.part").stat().st_size >= 4 * MIB)

        with pytest.raises(DownloadInProgressError) as caught:
            await job.download("file_000.bin", dest, overwrite=True)
        message = str(caught.value)
        assert str(tmp_path / "f.bin.part") in message
        assert f"process {os.getpid()}" in message and job.id in message

        gate.opened.set()
        assert await first == dest
    assert sha256_file(dest) == expected["file_000.bin"]
    assert tree(tmp_path) == ["f.bin"]


async def test_two_cli_processes_downloading_one_job_into_one_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(hold_at=8 * MIB)
    gate.install(monkeypatch)
    async with (
        Emulator(schedule_delay=0.01, range_support=False) as emu,  # like the live server
        session_for(emu) as session,
    ):
        job, expected = await files_job(session, [16 * MIB])
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTES_")}
        env.update(CHUTES_BASE_URL=emu.base_url, CHUTES_API_KEY=emu.api_key)
        command = [sys.executable, "-m", "chutes_jobs", "download", job.id, "--out", str(tmp_path)]
        first = popen(command, env)  # waited on in threads, below
        first_output = asyncio.ensure_future(asyncio.to_thread(first.communicate, timeout=120))
        await gate.holding.wait()
        await until(lambda: (tmp_path / "file_000.bin.part").stat().st_size >= 4 * MIB)

        second = popen(command, env)
        out, err = await asyncio.to_thread(second.communicate, timeout=120)  # at once
        assert not first_output.done()  # the first one still waits at the gate
        gate.opened.set()
        await first_output

    assert second.returncode == 3 and out == b""
    (line,) = err.decode().splitlines()
    assert str(tmp_path / "file_000.bin.part") in line
    assert f"another download (process {first.pid} " in line and job.id in line
    assert first.returncode == 0, first_output.result()
    assert sha256_file(tmp_path / "file_000.bin") == expected["file_000.bin"]
    assert tree(tmp_path) == ["file_000.bin"]


def popen(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Started here, waited on in a thread (asyncio's child watcher is process-wide state)."""
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# ----------------------------------------------------------------------------- case 3


async def test_a_name_of_252_bytes_downloads_and_resumes(emu: Emulator, tmp_path: Path) -> None:
    name = "r" * 248 + ".bin"
    data = os.urandom(3 * MIB)
    async with session_for(emu, max_attempts=1) as session:
        handle = await session.create_job("ext", "run")
        await finish_as_worker(emu, handle.id, {name: data})
        emu.faults.add("download", cut_after=MIB)
        with pytest.raises(DownloadOutputsError) as caught:
            await handle.download_outputs(tmp_path)
        assert isinstance(caught.value.exceptions[0], IncompleteTransferError)
        names = part_names(name)
        assert (tmp_path / names.part).stat().st_size == MIB
        assert max(len(names.part.encode()), len(names.record.encode())) <= 255

        paths = await handle.download_outputs(tmp_path)

    assert paths[name].read_bytes() == data
    assert range_headers(emu, handle.id)[-1] == f"bytes={MIB}-"
    assert tree(tmp_path) == [name]


@pytest.mark.parametrize("length", [250, 251, 255])
def test_partial_names_fit_whenever_the_final_name_fits(tmp_path: Path, length: int) -> None:
    for final in ("é" * (length // 2) + "x" * (length % 2), "x" * length):
        names = part_names(final)
        for name in (names.part, names.record):
            assert len(name.encode()) <= 255
            (tmp_path / name).write_bytes(b"")  # the filesystem takes it
        assert part_names(final) == names  # stable: a resume finds it again
    assert part_names("a" * 255) != part_names("a" * 254 + "b")


# ----------------------------------------------------------------------------- case 4


def plant(kind: str, where: Path, outside: Path) -> None:
    """Put something that is not this download's own file at ``where``."""
    if kind == "symlink":
        where.symlink_to(outside)
    elif kind == "dangling symlink":
        where.symlink_to(outside.with_name("nothing-here"))
    elif kind == "hard link":
        os.link(outside, where)
    elif kind == "fifo":
        os.mkfifo(where)
    elif kind == "another user's file":
        where.write_bytes(b"theirs")
        os.chown(where, 65534, 65534)


KINDS = ["symlink", "dangling symlink", "hard link", "fifo", "another user's file"]


@pytest.mark.parametrize("at", ["partial", "record"])
@pytest.mark.parametrize("kind", KINDS)
async def test_nothing_is_written_through_what_sits_at_a_partial_name(
    emu: Emulator, session: ChutesSession, tmp_path: Path, kind: str, at: str
) -> None:
    if kind == "another user's file" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_bytes(b"not yours")
    before = outside.stat()
    handle, expected = await files_job(session, [300_000, 1000])
    names = part_names("file_000.bin")
    plant(kind, out / (names.part if at == "partial" else names.record), outside)

    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(out)

    (error,) = caught.value.exceptions
    assert isinstance(error, UnsafePathError) and error.filename == "file_000.bin"
    assert (names.part if at == "partial" else names.record) in str(error)
    assert outside.read_bytes() == b"not yours" and outside.stat().st_mtime == before.st_mtime
    assert not (out / "file_000.bin").exists()
    sibling = "sub/file_001.bin"
    assert sha256_file(out / sibling) == expected[sibling]  # the other file landed


async def test_a_link_at_the_final_name_is_replaced_not_written_through(
    emu: Emulator, session: ChutesSession, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_bytes(b"mine")
    (tmp_path / "outside.txt").write_bytes(b"not yours")
    handle, expected = await files_job(session, [300_000, 1000])
    (out / "file_000.bin").symlink_to(out / "mine.txt")
    (out / "sub").mkdir()
    (out / "sub" / "file_001.bin").symlink_to(tmp_path / "outside.txt")

    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(out)  # a link there exists: not clobbered
    assert {type(e) for e in caught.value.exceptions} == {FileExistsError, UnsafePathError}
    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(out, overwrite=True)
    assert [type(e) for e in caught.value.exceptions] == [UnsafePathError]  # leads outside

    assert not (out / "file_000.bin").is_symlink()
    assert sha256_file(out / "file_000.bin") == expected["file_000.bin"]
    assert (out / "mine.txt").read_bytes() == b"mine"
    assert (tmp_path / "outside.txt").read_bytes() == b"not yours"


async def test_a_folder_swapped_for_a_link_after_the_check_is_refused(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    check = downloads_module._destination

    def check_then_swap(root: Path, file: Any) -> Path:
        dest = check(root, file)
        if file.filename.startswith("sub/"):
            (root / "sub").symlink_to(outside)  # the race: after the path check
        return dest

    monkeypatch.setattr(downloads_module, "_destination", check_then_swap)
    async with session_for(emu) as session:
        handle = await session.create_job("ext", "run")
        await finish_as_worker(emu, handle.id, {"sub/a.txt": b"a", "b.txt": b"b"})
        with pytest.raises(DownloadOutputsError) as caught:
            await handle.download_outputs(out)
    (error,) = caught.value.exceptions
    assert isinstance(error, UnsafePathError) and "'sub' is a link" in str(error)
    assert list(outside.iterdir()) == []
    assert (out / "b.txt").read_bytes() == b"b"


# ----------------------------------------------------------------------------- case 5


def files_open_under(root: Path) -> list[str]:
    """The descriptors of this process open on files under ``root``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
        if target.startswith(str(root)):
            found.append(target)
    return found


def client_descriptors(emu: Emulator) -> list[str]:
    """This process's descriptors but the emulator's own: its server sockets and its files
    (it runs in this process)."""
    server_side = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == emu.port:  # local port: the server's
                server_side.add(f"socket:[{fields[9]}]")
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor
        if target not in server_side and not target.startswith(str(emu.data_dir)):
            found.append(target)
    return found


@pytest.fixture
async def threads() -> AsyncIterator[Callable[[], Any]]:
    """A fresh default executor; calling the fixture's value waits until every thread job
    started so far has ended and its callbacks (the late releases) have run."""
    loop = asyncio.get_running_loop()
    pools = [ThreadPoolExecutor(8)]
    loop.set_default_executor(pools[0])

    async def settle() -> None:
        old = pools[-1]
        pools.append(ThreadPoolExecutor(8))
        loop.set_default_executor(pools[-1])
        with ThreadPoolExecutor(1) as waiter:
            await loop.run_in_executor(waiter, old.shutdown, True)
        for _ in range(5):  # done callbacks, then the callbacks they schedule
            await asyncio.sleep(0)

    yield settle
    await settle()


@pytest.mark.parametrize("where", ["claim", "upload open", "job folder"])
async def test_a_cancel_while_a_thread_opens_the_file_leaks_nothing(
    emu: Emulator,
    session: ChutesSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    threads: Callable[[], Any],
    where: str,
) -> None:
    entered, release = threading.Event(), threading.Event()
    places = {"claim": (partial, "_claim"), "upload open": (upload, "_open_source"),
              "job folder": (tempfile, "mkdtemp")}  # fmt: skip
    module, name = places[where]
    opener = getattr(module, name)

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait()
        return opener(*args, **kwargs)

    monkeypatch.setattr(module, name, slow_open)
    if where == "claim":
        handle, _ = await files_job(session, [1000])
        task = asyncio.create_task(handle.download("file_000.bin", tmp_path / "f.bin"))
    elif where == "upload open":
        worker = await worker_for(emu, session, tmp_path, {"a.bin": b"a" * 1000})
        task = asyncio.create_task(worker.handle.upload_outputs(worker.targets))
    else:  # the worker's output folder of run_and_report
        job = await session.create_job("ext", "run")
        runner = session.job_from_status_url(emu.job_status_url(job.id))
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        monkeypatch.setattr(tempfile, "tempdir", None)
        task = asyncio.create_task(runner.run_and_report(noop))
    await asyncio.to_thread(entered.wait)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    release.set()  # the thread opens the file (makes the folder) now, for nobody
    await threads()
    assert files_open_under(tmp_path) == []
    assert job_folders(tmp_path) == []  # the one made for nobody is gone


async def noop(output_dir: Path) -> dict[str, Any]:
    return {}


def job_folders(root: Path) -> list[Path]:
    return list(root.glob("chutes-job-*"))


@pytest.mark.parametrize("operation", ["download", "download_outputs", "upload_outputs"])
async def test_seeded_random_cancellations_leak_no_descriptor(
    emu: Emulator, tmp_path: Path, threads: Callable[[], Any], operation: str
) -> None:
    rng = random.Random(f"issue-12-{operation}")
    async with session_for(emu) as setup:
        job, _ = await files_job(setup, [5 * MIB, 300_000, 1000, 0])
        worker = await worker_for(emu, setup, tmp_path, {f"u{i}.bin": b"u" * i for i in range(4)})
        before = client_descriptors(emu)  # the emulator's own job runner has its sockets too
        async with session_for(emu) as session:  # the one whose transfers are cancelled
            handle = session.job(job.id)
            uploader = session.job_from_status_url(emu.job_status_url(worker.handle.id))

            def start(round_: int) -> Any:
                out = tmp_path / "out" / str(round_ % 3)  # some rounds meet an earlier partial
                if operation == "download":
                    return handle.download("file_000.bin", out / "f.bin", overwrite=True)
                if operation == "download_outputs":
                    return handle.download_outputs(out, overwrite=True)
                return uploader.upload_outputs(worker.targets)

            cancelled = 0
            for round_ in range(60):
                task = asyncio.create_task(start(round_))
                for _ in range(rng.randrange(40)):  # a random moment: loop turns, a bit more
                    await asyncio.sleep(0)
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.005]))
                cancelled += task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await threads()
            assert files_open_under(tmp_path) == []
            assert cancelled > 30  # most rounds were cut short, not finished
        for _ in range(500):  # closed transports let go of their sockets on later loop turns
            if sorted(client_descriptors(emu)) == sorted(before):
                break
            await asyncio.sleep(0.01)
        assert sorted(client_descriptors(emu)) == sorted(before)


class WorkerSide:
    """A worker's handle and the upload targets its finish answered."""

    def __init__(self, handle: JobHandle, targets: Any) -> None:
        self.handle, self.targets = handle, targets


async def worker_for(
    emu: Emulator, session: ChutesSession, tmp_path: Path, files: dict[str, bytes]
) -> WorkerSide:
    """A job of ``ext`` finished by this test as its worker, ready to upload ``files``."""
    job = await session.create_job("ext", "run")
    source = tmp_path / "sources"
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    worker = session.job_from_status_url(emu.job_status_url(job.id))
    return WorkerSide(worker, await worker.finish(outputs=source))


# ----------------------------------------------------------------------------- case 6


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs mounted for the test (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 20 MiB tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def free_on(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


async def test_a_file_that_cannot_fit_fails_alone_and_keeps_no_space(
    session: ChutesSession, small_disk: Path
) -> None:
    handle, expected = await files_job(session, [64 * MIB, MIB, 2 * MIB, 3 * MIB, 100_000])
    free = free_on(small_disk)

    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(small_disk)

    (error,) = caught.value.exceptions
    assert isinstance(error, InsufficientSpaceError)
    assert (error.filename, error.needed) == ("file_000.bin", 64 * MIB)
    assert 0 < error.free <= free
    assert "'file_000.bin'" in str(error) and str(small_disk) in str(error)
    assert sorted(caught.value.downloaded) == sorted(expected.keys() - {"file_000.bin"})
    for name in expected.keys() - {"file_000.bin"}:
        assert sha256_file(small_disk / name) == expected[name]
    assert "file_000.bin" not in tree(small_disk)
    assert not any(n.endswith((".part", ".part.json")) for n in tree(small_disk))
    assert free_on(small_disk) >= free - (6 * MIB + 100_000) - MIB  # only the landed files


async def test_a_lone_download_that_cannot_fit_says_what_and_where(
    session: ChutesSession, small_disk: Path
) -> None:
    handle, _ = await files_job(session, [64 * MIB])
    with pytest.raises(InsufficientSpaceError) as caught:
        await handle.download("file_000.bin", small_disk / "big.bin")
    assert caught.value.needed == 64 * MIB and caught.value.folder == str(small_disk)
    assert f"it needs {64 * MIB} bytes (64.0 MiB)" in str(caught.value)
    assert tree(small_disk) == []


async def test_files_that_fit_one_at_a_time_but_not_together(
    session: ChutesSession, small_disk: Path
) -> None:
    handle, expected = await files_job(session, [12 * MIB, 12 * MIB])
    with pytest.raises(DownloadOutputsError) as caught:
        await handle.download_outputs(small_disk)
    (error,) = caught.value.exceptions
    assert isinstance(error, InsufficientSpaceError)
    (landed,) = caught.value.downloaded
    assert sha256_file(small_disk / landed) == expected[landed]
    assert tree(small_disk) == [landed]


async def test_a_disk_filled_by_someone_else_meanwhile(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(hold_at=4 * MIB)
    gate.install(monkeypatch)
    async with Emulator(schedule_delay=0.01) as emu, session_for(emu) as session:
        handle, _ = await files_job(session, [15 * MIB])
        task = asyncio.create_task(handle.download("file_000.bin", small_disk / "f.bin"))
        await gate.holding.wait()
        await until(lambda: (small_disk / "f.bin.part").stat().st_size >= 2 * MIB)
        filler = small_disk / "filler"
        with filler.open("wb") as fh:  # another program takes what the download counted on
            for _ in range(10):
                fh.write(b"\0" * MIB)
        gate.opened.set()
        with pytest.raises(InsufficientSpaceError, match=r"output file 'file_000\.bin'"):
            await task
    assert tree(small_disk) == ["filler"]  # the partial is gone, its space with it


# ----------------------------------------------------------------------------- helpers


async def finish_as_worker(emu: Emulator, job_id: str, files: dict[str, bytes]) -> None:
    """Finish ``job_id`` as its worker with plain aiohttp (no client-side name checks)."""
    status_url = emu.job_status_url(job_id)
    async with aiohttp.ClientSession() as http:
        body = {"status": "complete", "result": {}, "output_filenames": list(files)}
        async with http.post(status_url, data=json.dumps(body).encode()) as answer:
            assert answer.status == 200, await answer.text()
            urls: dict[str, str] = (await answer.json())["output_storage_urls"]
        for name, url in urls.items():
            form = aiohttp.FormData()
            form.add_field("file", files[name], filename="f.bin")
            form.add_field("path", name)
            async with http.put(url, data=form) as answer:
                assert answer.status == 200, await answer.text()
        async with http.put(status_url, json={"status": "done"}) as answer:
            assert answer.status == 200, await answer.text()
