"""The worker side: finish → upload → complete, end to end on the emulator over loopback HTTP,
plus the exact wire format checked with aioresponses."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yarl
from aioresponses import aioresponses

from chutes_jobs import (
    AuthenticationError,
    BadRequestError,
    ChutesSession,
    ConfigurationError,
    RetryPolicy,
    file_id_for,
)
from chutes_jobs import worker as worker_module
from chutes_jobs.demo import sha256_file
from chutes_jobs.emulator import Emulator
from chutes_jobs.job import JobHandle
from chutes_jobs.worker import UploadResult, UploadTargets

MIB = 1024 * 1024
FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(expose_status=True, schedule_delay=0.01) as emulator:
        emulator.add_chute("ext", {"run": None})  # jobs left to the test, acting as the worker
        yield emulator


@pytest.fixture
async def user(emu: Emulator) -> AsyncIterator[ChutesSession]:
    async with ChutesSession(base_url=emu.base_url, api_key=emu.api_key) as session:
        yield session


@pytest.fixture
async def worker(emu: Emulator) -> AsyncIterator[ChutesSession]:
    """A worker's session: no user credentials, fast retries."""
    async with ChutesSession(base_url=emu.base_url, retry_policy=FAST) as session:
        yield session


async def new_job(user: ChutesSession) -> str:
    return (await user.create_job("ext", "run")).id


async def worker_handle(emu: Emulator, user: ChutesSession, worker: ChutesSession) -> JobHandle:
    return worker.job_from_status_url(emu.job_status_url(await new_job(user)))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_big(path: Path, size: int) -> str:
    """``size`` bytes, each MiB block distinct; returns their sha256."""
    base = os.urandom(MIB)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for i in range(0, size, MIB):
            block = (i // MIB).to_bytes(8, "big") + base[8 : min(MIB, size - i)]
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_sha(emu: Emulator, job_id: str, name: str) -> str:
    """sha256 of what the emulator stored for an output file."""
    assert emu.data_dir is not None
    return sha256_file(emu.data_dir / "blobs" / job_id / file_id_for(job_id, name))


# ----------------------------------------------------------------------------- happy path


async def test_three_outputs_big_and_nested_land_intact(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    big_sha = await asyncio.to_thread(write_big, tmp_path / "big.bin", 256 * MIB)
    nested = write(tmp_path / "x" / "c.bin", os.urandom(300_000))
    small = write(tmp_path / "log.txt", b"hello\n")
    outputs = {"big.bin": tmp_path / "big.bin", "a/b/c.bin": nested, "_chute.log": small}
    seen: dict[str, int] = {}

    targets = await handle.finish(result={"ok": True}, outputs=outputs)
    assert sorted(targets) == ["_chute.log", "a/b/c.bin", "big.bin"]
    report = await handle.upload_outputs(
        targets, progress=lambda p: seen.__setitem__(p.filename, p.done)
    )
    final = await handle.complete()

    assert report.ok and sorted(report.succeeded) == sorted(outputs)
    assert report.succeeded["big.bin"].size == 256 * MIB
    assert seen["big.bin"] == 256 * MIB
    assert final.is_finished and final.status == "complete" and not final.failed
    assert final.result == {"ok": True, "chutes_jobs": {"status": "complete"}}
    assert all(f.uploaded for f in final.output_files.values())
    assert await asyncio.to_thread(stored_sha, emu, handle.id, "big.bin") == big_sha
    assert stored_sha(emu, handle.id, "a/b/c.bin") == sha(nested.read_bytes())
    assert stored_sha(emu, handle.id, "_chute.log") == sha(b"hello\n")


async def test_outputs_directory_is_walked_recursively_with_posix_names(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    out = tmp_path / "out"
    for name in ["top.txt", "sub/y.txt", "sub/deeper/z.bin"]:
        write(out / name, name.encode())
    targets = await handle.finish(outputs=out)
    assert list(targets) == ["sub/deeper/z.bin", "sub/y.txt", "top.txt"]
    assert targets.sources["sub/y.txt"] == out / "sub" / "y.txt"
    assert (await handle.upload_outputs(targets)).ok
    await handle.complete()
    for name in targets:
        assert stored_sha(emu, handle.id, name) == sha(name.encode())


async def test_user_downloads_what_the_worker_uploaded(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    data = os.urandom(2 * MIB + 3)
    targets = await handle.finish(outputs={"d/e.bin": write(tmp_path / "e.bin", data)})
    await handle.upload_outputs(targets)
    await handle.complete()
    paths = await user.job(handle.id).download_outputs(tmp_path / "down")
    assert paths["d/e.bin"].read_bytes() == data


# ----------------------------------------------------------------------------- retries


async def test_a_502_burst_is_retried_and_the_file_resent_whole(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    data = os.urandom(3 * MIB + 11)
    targets = await handle.finish(outputs={"f.bin": write(tmp_path / "f.bin", data)})
    emu.faults.add("upload", status=502, times=2)
    result = await handle.upload("f.bin", tmp_path / "f.bin", targets["f.bin"])
    assert result == UploadResult("f.bin", file_id_for(handle.id, "f.bin"), len(data))
    assert emu.counts["upload"] == 3
    assert stored_sha(emu, handle.id, "f.bin") == sha(data)
    assert (await handle.complete()).status == "complete"


async def test_a_cut_mid_upload_is_retried_from_the_start(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    data = os.urandom(8 * MIB)
    targets = await handle.finish(outputs={"f.bin": write(tmp_path / "f.bin", data)})
    emu.faults.add("upload", cut_after=3 * MIB)
    progress: list[int] = []
    await handle.upload_outputs(targets, progress=lambda p: progress.append(p.done))
    assert emu.counts["upload"] == 2
    assert stored_sha(emu, handle.id, "f.bin") == sha(data)
    assert progress[-1] == len(data)
    restarts = [b for a, b in itertools.pairwise(progress) if b < a]
    assert restarts and restarts[0] <= MIB  # the second attempt counted from zero again


# ----------------------------------------------------------------------------- failures


async def test_one_file_failing_for_good_leaves_the_others_and_a_partial_failure(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    files = {n: write(tmp_path / n, n.encode() * 1000) for n in ["ok.bin", "gone.bin", "bad.bin"]}
    targets = await handle.finish(outputs=files)
    files["gone.bin"].unlink()  # vanished between finish and upload
    good_token = yarl.URL(targets["bad.bin"]).query["token"]
    tampered = yarl.URL(targets["bad.bin"]).update_query(token=good_token[:-4] + "AAAA")
    targets = attrs.evolve(targets, urls={**targets.urls, "bad.bin": str(tampered)})

    report = await handle.upload_outputs(targets)

    assert list(report.succeeded) == ["ok.bin"] and not report.ok
    assert isinstance(report.failed["gone.bin"], FileNotFoundError)
    assert isinstance(report.failed["bad.bin"], AuthenticationError)
    assert report.failed["bad.bin"].status == 401
    assert "Missing or invalid JWT" in report.reasons["bad.bin"]
    assert "gone.bin" in str(report) and "bad.bin" in str(report)
    for text in [str(report), repr(report.failed["bad.bin"]), str(report.failed["bad.bin"])]:
        assert good_token not in text and tampered.query["token"] not in text
    with pytest.raises(ExceptionGroup) as group:
        report.raise_for_failures()
    assert len(group.value.exceptions) == 2

    final = await handle.complete()
    assert final.status == "partial_failure" and final.failed
    assert final.error_detail is not None
    assert "gone.bin" in final.error_detail and "bad.bin" in final.error_detail
    assert stored_sha(emu, handle.id, "ok.bin") == sha(b"ok.bin" * 1000)


async def test_a_401_on_finish_never_shows_the_token(
    emu: Emulator, user: ChutesSession, worker: ChutesSession
) -> None:
    job_id, other = await new_job(user), await new_job(user)
    foreign_token = yarl.URL(emu.job_status_url(other)).query["token"]
    handle = worker.job_from_status_url(f"{emu.base_url}/jobs/{job_id}?token={foreign_token}")
    with pytest.raises(AuthenticationError) as caught:
        await handle.finish()
    assert caught.value.status == 401 and caught.value.detail == "Missing or invalid JWT"
    for text in [str(caught.value), repr(caught.value), repr(handle), caught.value.url]:
        assert foreign_token not in text


async def test_reprs_hold_no_token(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    status_url = emu.job_status_url(await new_job(user))
    token = yarl.URL(status_url).query["token"]
    handle = worker.job_from_status_url(status_url)
    targets = await handle.finish(outputs={"a.txt": write(tmp_path / "a.txt", b"a")})
    upload_token = yarl.URL(targets["a.txt"]).query["token"]
    for text in [repr(handle), str(handle), repr(targets), str(targets), repr(targets.job)]:
        assert token not in text and upload_token not in text
    assert "a.txt" in repr(targets)


# ----------------------------------------------------------------------------- refused early


@pytest.mark.parametrize("result", [[1, 2], "text", 3, {"x": float("nan")}, {"x": object()}])
async def test_finish_refuses_a_result_the_server_would_break_on(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, result: Any
) -> None:
    handle = await worker_handle(emu, user, worker)
    with pytest.raises(ConfigurationError, match="result"):
        await handle.finish(result=result)
    assert emu.counts["finish"] == 0


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../b", "a\\b", "", "./a", "C:x"])
async def test_unsafe_output_names_are_refused_before_sending(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path, name: str
) -> None:
    handle = await worker_handle(emu, user, worker)
    with pytest.raises(ConfigurationError, match="output name"):
        await handle.finish(outputs={name: write(tmp_path / "f", b"x")})
    assert emu.counts["finish"] == 0


async def test_a_missing_output_file_is_refused_before_sending(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    with pytest.raises(ConfigurationError, match="not a readable file"):
        await handle.finish(outputs={"a.bin": tmp_path / "nope.bin"})
    with pytest.raises(ConfigurationError, match="does not exist"):
        await handle.finish(outputs=tmp_path / "no-dir")
    assert emu.counts["finish"] == 0


async def test_a_failure_status_always_carries_a_detail(
    emu: Emulator, user: ChutesSession, worker: ChutesSession
) -> None:
    first, second = await worker_handle(emu, user, worker), await worker_handle(emu, user, worker)
    await first.finish(status="error")
    await second.finish(status="cancelled", detail="stopped by the user")
    assert emu.job(first.id).error_detail == "job ended with status 'error'"
    assert emu.job(second.id).error_detail == "stopped by the user"
    final = await first.complete()
    assert final.status == "error" and final.failed


async def test_worker_calls_need_a_token(
    emu: Emulator, user: ChutesSession, tmp_path: Path
) -> None:
    handle = user.job(await new_job(user))
    targets = UploadTargets(urls={}, sources={}, job=await handle.refresh())
    calls = [
        handle.finish(),
        handle.upload("a", tmp_path / "a", "http://127.0.0.1:1/x?token=t"),
        handle.upload_outputs(targets),
        handle.complete(),
        handle.run_and_report(_noop),
    ]
    for call in calls:
        with pytest.raises(ConfigurationError, match="token"):
            await call
    assert emu.counts["finish"] == emu.counts["complete"] == emu.counts["upload"] == 0


async def _noop(*, output_dir: Path) -> None:
    return None


# ----------------------------------------------------------------------------- status URL


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "absolute http"),
        ("ftp://h/jobs/j?token=SECRET1", "absolute http"),
        ("http://127.0.0.1:1/job/j?token=SECRET1", "/jobs/{job_id}"),
        ("http://127.0.0.1:1/jobs/?token=SECRET1", "/jobs/{job_id}"),
        ("http://127.0.0.1:1/jobs/j", "token="),
        ("http://127.0.0.1:1/jobs/j?token=", "token="),
        ("http://127.0.0.1:1/jobs/j?token=SECRET1&token=SECRET2", "token="),
    ],
)
async def test_a_malformed_status_url_is_a_clear_configuration_error(
    url: str, problem: str
) -> None:
    async with ChutesSession(base_url="http://127.0.0.1:1") as session:
        with pytest.raises(ConfigurationError, match="malformed job status URL") as caught:
            session.job_from_status_url(url)
    assert problem in str(caught.value) and "SECRET" not in str(caught.value)


async def test_a_status_url_of_another_server_is_refused() -> None:
    async with ChutesSession(base_url="http://127.0.0.1:1") as session:
        with pytest.raises(ConfigurationError, match="base_url") as caught:
            session.job_from_status_url("http://127.0.0.1:2/jobs/j?token=SECRET1")
        handle = session.job_from_status_url("http://127.0.0.1:1/jobs/j?token=SECRET1")
    assert "SECRET" not in str(caught.value)
    assert handle.id == "j" and "SECRET" not in repr(handle)


# ----------------------------------------------------------------------------- complete


async def test_complete_twice_returns_the_finished_job(
    emu: Emulator, user: ChutesSession, worker: ChutesSession
) -> None:
    handle = await worker_handle(emu, user, worker)
    await handle.finish(result={"n": 1})
    first = await handle.complete()
    second = await handle.complete()  # 400 Job already finished: success
    assert emu.counts["complete"] == 2
    assert (
        second.is_finished
        and second.job_id == first.job_id
        and second.result == {"n": 1, "chutes_jobs": {"status": "complete"}}
    )


async def test_complete_twice_with_user_credentials_reads_the_job_back(
    emu: Emulator, user: ChutesSession
) -> None:
    handle = user.job_from_status_url(emu.job_status_url(await new_job(user)))
    await handle.finish()
    await handle.complete()
    handle2 = user.job_from_status_url(emu.job_status_url(handle.id))
    final = await handle2.complete()
    assert final.is_finished and final.status == "complete"
    assert emu.counts["get"] == 1


async def test_complete_survives_a_hidden_resend(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    targets = await handle.finish(outputs={"a.txt": write(tmp_path / "a.txt", b"a")})
    await handle.upload_outputs(targets)
    emu.faults.add("complete", drop_after_handling=True)
    final = await handle.complete()  # the answer is lost; the re-send hears 400
    assert emu.counts["complete"] == 2
    assert emu.job(handle.id).status == "complete"
    assert final.is_finished and not final.failed and final.instance is None


# ----------------------------------------------------------------------------- concurrency


async def test_upload_outputs_is_bounded_and_collects_failures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    active, peak = 0, 0

    async def fake_upload(_: Any, name: str, *args: Any, **kwargs: Any) -> UploadResult:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        active -= 1
        if name == "f7":
            raise ValueError("disk on fire")
        return UploadResult(name, None, 0)

    monkeypatch.setattr(worker_module, "upload_file", fake_upload)
    names = [f"f{i}" for i in range(20)]
    targets = UploadTargets(
        urls=dict.fromkeys(names, "u"), sources=dict.fromkeys(names, tmp_path), job=_job()
    )
    async with ChutesSession(base_url="http://127.0.0.1:1") as session:
        handle = JobHandle(session, "j", token="t")
        report = await handle.upload_outputs(targets, concurrency=3)
        with pytest.raises(ConfigurationError):
            await handle.upload_outputs(targets, concurrency=0)
    assert peak == 3
    assert len(report.succeeded) == 19 and list(report.failed) == ["f7"]
    assert report.reasons == {"f7": "ValueError: disk on fire"}


def _job() -> Any:
    from chutes_jobs import Job

    return Job(job_id="j")


# ----------------------------------------------------------------------------- wire format

BASE = "http://127.0.0.1:9"
JOB_TOKEN = "JOBTOKEN.abc.def"
FILE_TOKEN = "FILETOKEN.ghi.jkl"
UPLOAD_URL = f"{BASE}/jobs/j1/upload?token={FILE_TOKEN}"


class _Sink:
    """Collects what an aiohttp payload writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk

    async def write_eof(self, chunk: bytes = b"") -> None:
        self.data += chunk

    async def drain(self) -> None:
        return None


def _requests(mock: aioresponses) -> list[tuple[str, yarl.URL, dict[str, Any]]]:
    return [(k[0], k[1], c.kwargs) for k, calls in mock.requests.items() for c in calls]


@pytest.fixture
async def wire(http_mock: aioresponses) -> AsyncIterator[JobHandle]:
    async with ChutesSession(base_url=BASE, retry_policy=FAST) as session:
        yield session.job_from_status_url(f"{BASE}/jobs/j1?token={JOB_TOKEN}")


@pytest.mark.parametrize("status", ["complete", "error"])
async def test_finish_sends_exactly_the_protocol_body(
    wire: JobHandle, http_mock: aioresponses, tmp_path: Path, status: str
) -> None:
    answer = {"job_id": "j1", "output_storage_urls": {"x/y.bin": UPLOAD_URL}}
    http_mock.post(re.compile(r".*/jobs/j1\?.*"), payload=answer)
    targets = await wire.finish(
        status=status, result={"a": 1}, outputs={"x/y.bin": write(tmp_path / "y", b"y")}
    )
    [(method, url, kwargs)] = _requests(http_mock)
    assert (method, url.path, dict(url.query)) == ("POST", "/jobs/j1", {"token": JOB_TOKEN})
    body = json.loads(kwargs["data"])
    record = {"status": status}
    expected = {"status": status, "result": {"a": 1, "chutes_jobs": record}}
    expected["output_filenames"] = ["x/y.bin"]
    if status != "complete":
        expected["detail"] = record["detail"] = "job ended with status 'error'"
    assert body == expected
    assert "Authorization" not in kwargs["headers"]
    assert targets["x/y.bin"] == UPLOAD_URL


async def test_upload_sends_exactly_file_and_path_with_a_known_length(
    wire: JobHandle, http_mock: aioresponses, tmp_path: Path
) -> None:
    data = os.urandom(3 * MIB + 5)
    http_mock.put(re.compile(r".*/upload\?.*"), payload={"status": "success", "file_id": "F"})
    result = await wire.upload("a/b/c.bin", write(tmp_path / "c.bin", data), UPLOAD_URL)
    assert result == UploadResult("a/b/c.bin", "F", len(data))

    [(method, url, kwargs)] = _requests(http_mock)
    assert (method, url.path, dict(url.query)) == ("PUT", "/jobs/j1/upload", {"token": FILE_TOKEN})
    assert not kwargs.get("chunked")
    assert "Transfer-Encoding" not in kwargs["headers"]
    body = kwargs["data"]
    sink = _Sink()
    await body.write(sink)
    assert body.size == len(sink.data)  # aiohttp sends it as Content-Length
    parts = _multipart_parts(bytes(sink.data), body.boundary)
    assert [p[0] for p in parts] == [
        'form-data; name="file"; filename="c.bin"',
        'form-data; name="path"',
    ]
    assert parts[0][1] == data and parts[1][1] == b"a/b/c.bin"


def _multipart_parts(raw: bytes, boundary: str) -> list[tuple[str, bytes]]:
    """(Content-Disposition, body) of each part."""
    parts = []
    for chunk in raw.split(b"--" + boundary.encode())[1:-1]:
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        parts.append((headers["Content-Disposition"], content[:-2]))
    return parts


async def test_complete_sends_the_job_token_only(wire: JobHandle, http_mock: aioresponses) -> None:
    http_mock.put(re.compile(r".*/jobs/j1\?.*"), payload={"job_id": "j1", "finished_at": None})
    await wire.complete()
    [(method, url, kwargs)] = _requests(http_mock)
    assert (method, url.path, dict(url.query)) == ("PUT", "/jobs/j1", {"token": JOB_TOKEN})
    assert json.loads(kwargs["data"]) == {"status": "done"}


async def test_upload_goes_out_with_content_length_on_the_wire(
    emu: Emulator, user: ChutesSession, worker: ChutesSession, tmp_path: Path
) -> None:
    handle = await worker_handle(emu, user, worker)
    targets = await handle.finish(outputs={"a.bin": write(tmp_path / "a.bin", b"z" * 70_000)})
    await handle.upload_outputs(targets)
    [record] = [r for r in emu.requests if r.route == "upload"]
    assert int(record.headers["Content-Length"]) > 70_000
    assert record.headers["Content-Type"].startswith("multipart/form-data; boundary=")


@pytest.mark.parametrize("detail", ["Job already finished", "Job alread finished"])
async def test_complete_counts_already_finished_as_success(
    wire: JobHandle, http_mock: aioresponses, detail: str
) -> None:
    """Both spellings the server has used mean an earlier attempt completed the job."""
    http_mock.post(re.compile(r".*/jobs/j1\?.*"), payload={"job_id": "j1"})
    http_mock.put(re.compile(r".*/jobs/j1\?.*"), status=400, payload={"detail": detail})
    await wire.finish(result=None)
    final = await wire.complete()
    assert final.job_id == "j1" and final.is_finished


async def test_complete_other_bad_request_is_raised(
    wire: JobHandle, http_mock: aioresponses
) -> None:
    http_mock.put(re.compile(r".*/jobs/j1\?.*"), status=400, payload={"detail": "Bad thing"})
    with pytest.raises(BadRequestError, match="Bad thing"):
        await wire.complete()
