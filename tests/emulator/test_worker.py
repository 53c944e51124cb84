"""The worker routes: tokens, finish, upload (multipart), complete, and download rules."""

from __future__ import annotations

import uuid

import aiohttp
from emu_client import Client

from chutes_jobs.emulator import Emulator


def _missing(where: str, name: str) -> dict[str, object]:
    return {"type": "missing", "loc": [where, name], "msg": "Field required", "input": None}


async def _finish(client: Client, job_id: str, names: list[str], **body: object) -> dict[str, str]:
    answer = await client.finish(
        job_id, {"status": "complete", "result": {"ok": 1}, "output_filenames": names, **body}
    )
    assert answer.status == 200, answer.body
    urls: dict[str, str] = answer.json["output_storage_urls"]
    return urls


async def test_token_rules(client: Client) -> None:
    job_id, other = await client.new_job(), await client.new_job()
    no_token = await client.call("POST", f"/jobs/{job_id}", json={})
    assert (no_token.status, no_token.detail) == (422, [_missing("query", "token")])
    for url in (
        f"{client.emu.base_url}/jobs/{job_id}?token=garbage",
        f"{client.emu.base_url}/jobs/{job_id}?token={client.emu.tokens.issue(other)}",
    ):
        answer = await client.finish(job_id, {"status": "complete", "result": None}, url)
        assert (answer.status, answer.detail) == (401, "Missing or invalid JWT")
    ghost = str(uuid.uuid4())
    answer = await client.finish(ghost, {"status": "complete", "result": None})
    assert (answer.status, answer.detail) == (401, f"job_id='{ghost}' not found!")


async def test_finish_lists_outputs_and_hands_out_upload_urls(client: Client) -> None:
    job_id = await client.new_job()
    answer = await client.finish(
        job_id,
        {"status": "complete", "result": {"n": 1}, "output_filenames": ["a.txt", "d/b.txt"]},
    )
    job = answer.json
    assert set(job["output_storage_urls"]) == {"a.txt", "d/b.txt"}
    url = job["output_storage_urls"]["a.txt"]
    assert url.startswith(f"{client.emu.base_url}/jobs/{job_id}/upload?token=")
    files = job["output_files"]
    assert files[str(uuid.uuid5(uuid.UUID(job_id), "d/b.txt"))]["filename"] == "d/b.txt"
    assert all(f["uploaded"] is False for f in files.values())
    assert job["result"] == {"n": 1} and job["finished_at"] is None
    assert (await client.get(job_id)).json["output_storage_urls"] == {}
    assert client.emu.job(job_id).status == "complete_pending_uploads"


async def test_upload_and_complete(client: Client) -> None:
    job_id = await client.new_job()
    urls = await _finish(client, job_id, ["a.txt", "d/b.txt"])
    answer = await client.upload(urls["a.txt"], "a.txt", b"hello")
    file_id = str(uuid.uuid5(uuid.UUID(job_id), "a.txt"))
    assert answer.json == {
        "status": "success",
        "filename": "a.txt",
        "file_id": file_id,
        "path": answer.json["path"],
        "uploaded": True,
    }
    assert answer.json["path"].endswith(f"/{job_id}/outputs/a.txt")
    assert (await client.upload(urls["a.txt"], "a.txt", b"hello again")).status == 200
    assert (await client.upload(urls["d/b.txt"], "d/b.txt", b"b")).status == 200
    done = await client.complete(job_id)
    assert done.status == 200
    job = done.json
    assert job["finished_at"] is not None and job["instance"] is None
    assert job["instance_id"] is None
    assert all(f["uploaded"] for f in job["output_files"].values())
    assert client.emu.job(job_id).status == "complete"
    again = await client.complete(job_id)
    assert (again.status, again.detail) == (400, "Job already finished")
    late = await client.upload(urls["a.txt"], "a.txt", b"late")
    assert (late.status, late.detail) == (400, "Job already finished")
    refinish = await client.finish(job_id, {"status": "complete", "result": None})
    assert (refinish.status, refinish.detail) == (400, "Job already finished")
    body = await client.download(job_id, file_id)
    assert body.body == b"hello again"
    assert body.headers["Content-Disposition"] == 'attachment; filename="a.txt"'
    assert body.headers["Content-Type"] == "application/octet-stream"
    assert body.headers["Content-Length"] == "11"


async def test_partial_failure_names_missing_files(client: Client) -> None:
    job_id = await client.new_job()
    urls = await _finish(client, job_id, ["a", "b", "c"])
    await client.upload(urls["b"], "b", b"x")
    await client.complete(job_id)
    job = client.emu.job(job_id)
    assert job.status == "partial_failure"
    prefix = "Failed to upload files: "  # names in the stored list's (JSONB) order
    assert job.error_detail is not None and job.error_detail.startswith(prefix)
    assert sorted(job.error_detail.removeprefix(prefix).split(", ")) == ["a", "c"]


async def test_failed_job_with_missing_file_appends_to_detail(client: Client) -> None:
    job_id = await client.new_job()
    await _finish(client, job_id, ["log.txt"], status="error", detail="boom", result=None)
    assert (await client.complete(job_id)).status == 200
    assert client.emu.job(job_id).status == "error"
    assert client.emu.job(job_id).error_detail == "boom\nFailed to upload files: log.txt"


async def test_refinish_rebuilds_the_file_list(client: Client) -> None:
    job_id = await client.new_job()
    urls = await _finish(client, job_id, ["a", "b"])
    await client.upload(urls["a"], "a", b"x")
    job = (await client.finish(job_id, {"status": "complete", "result": None,
                                        "output_filenames": ["a", "c"]})).json  # fmt: skip
    assert sorted(f["filename"] for f in job["output_files"].values()) == ["a", "c"]
    assert all(f["uploaded"] is False for f in job["output_files"].values())


async def test_finish_without_status_is_error_and_without_files_stays_complete(
    client: Client,
) -> None:
    first, second = await client.new_job(), await client.new_job()
    await client.finish(first, {"result": None})
    assert client.emu.job(first).status == "error"
    await client.finish(second, {"status": "complete", "result": None})
    await client.complete(second)
    assert client.emu.job(second).status == "complete"


async def test_upload_token_rules(client: Client) -> None:
    job_id = await client.new_job()
    url_before = f"{client.emu.base_url}/jobs/{job_id}/upload?token=" + client.emu.tokens.issue(
        job_id, "a"
    )
    before = await client.upload(url_before, "a", b"x")
    assert (before.status, before.body) == (500, b"Internal Server Error")
    urls = await _finish(client, job_id, ["a", "b"])
    wrong_path = await client.upload(urls["a"], "b", b"x")
    assert (wrong_path.status, wrong_path.detail) == (401, "Missing or invalid JWT")
    unlisted_url = url_before.replace(
        url_before.split("token=")[1], client.emu.tokens.issue(job_id, "zzz")
    )
    unlisted = await client.upload(unlisted_url, "zzz", b"x")
    assert unlisted.status == 401
    assert unlisted.detail == f"job_id='{job_id}' did not have any output file with filename='zzz'"
    other = await client.new_job()
    await _finish(client, other, [])
    empty_url = f"{client.emu.base_url}/jobs/{other}/upload?token=" + client.emu.tokens.issue(
        other, "zzz"
    )
    empty = await client.upload(empty_url, "zzz", b"x")
    assert (empty.status, empty.detail) == (404, "File zzz not found in job output files")


async def test_upload_multipart_rules(client: Client) -> None:
    job_id = await client.new_job()
    url = (await _finish(client, job_id, ["a"]))["a"]
    no_token = url.split("?")[0]
    empty = await client.call("PUT", no_token, data=aiohttp.FormData({"other": "1"}))
    assert empty.status == 422
    assert empty.detail == [
        _missing("query", "token"),
        _missing("body", "file"),
        _missing("body", "path"),
    ]
    form = aiohttp.FormData()
    form.add_field("file", "just text")  # no filename: not a file
    form.add_field("path", "a")
    no_filename = await client.call("PUT", url, data=form)
    assert no_filename.status == 422
    assert no_filename.detail[0]["type"] == "value_error"
    assert no_filename.detail[0]["loc"] == ["body", "file"]
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    broken = await client.call("PUT", url, data=b"--xyz\r\ngarbage", headers=headers)
    assert (broken.status, broken.detail) == (400, "There was an error parsing the body")
    assert client.emu.job(job_id).output_files is not None
    assert not any(f["uploaded"] for f in (client.emu.job(job_id).output_files or {}).values())


async def test_upload_streams_large_parts_to_disk(client: Client) -> None:
    job_id = await client.new_job()
    url = (await _finish(client, job_id, ["big"]))["big"]
    data = bytes(range(256)) * 20_000  # ~5 MB, several chunks
    assert (await client.upload(url, "big", data)).status == 200
    await client.complete(job_id)
    got = await client.download(job_id, str(uuid.uuid5(uuid.UUID(job_id), "big")))
    assert got.body == data


async def test_download_rules(client: Client) -> None:
    never = await client.new_job()
    answer = await client.download(never, str(uuid.uuid4()))
    assert (answer.status, answer.body) == (500, b"Internal Server Error")
    job_id = await client.finished_job({"up": b"1", "down": b"2"}, upload=False)
    unknown = str(uuid.uuid4())
    answer = await client.download(job_id, unknown)
    assert answer.status == 404
    assert answer.detail == f"Job output file not found job_id='{job_id}' file_id='{unknown}'"
    listed = str(uuid.uuid5(uuid.UUID(job_id), "up"))
    answer = await client.download(job_id, listed)
    assert (answer.status, answer.body) == (500, b"Internal Server Error")
    stranger = client.emu.add_user()
    answer = await client.download(job_id, listed, headers=client.auth(stranger.api_key))
    assert (answer.status, answer.detail) == (404, "Job not found, or does not belong to you")


async def test_download_of_a_non_latin1_name_is_500(client: Client) -> None:
    job_id = await client.finished_job({"snow-☃.txt": b"x"})
    answer = await client.download(job_id, str(uuid.uuid5(uuid.UUID(job_id), "snow-☃.txt")))
    assert answer.status == 500


async def test_delete_default_mode_deletes(client: Client) -> None:
    job_id = await client.finished_job({"a": b"x"})
    answer = await client.call("DELETE", f"/jobs/{job_id}", headers=client.auth())
    assert answer.status == 200
    assert answer.json == {"deleted": True, "job_id": job_id}
    assert (await client.get(job_id)).status == 404
    assert not (client.emu.data_dir / "blobs" / job_id).exists()  # type: ignore[operator]
    again = await client.call("DELETE", f"/jobs/{job_id}", headers=client.auth())
    assert again.status == 404


async def test_non_object_result_is_refused_by_default(client: Client) -> None:
    job_id = await client.new_job()
    answer = await client.finish(job_id, {"status": "complete", "result": [1, 2]})
    assert answer.status == 422
    assert answer.detail[0]["loc"] == ["body", "result"]
    assert (await client.get(job_id)).status == 200
    missing = await client.finish(job_id, {"status": "complete"})
    assert missing.status == 200 and missing.json["result"] is None


async def test_failed_job_without_detail_completes_by_default(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator() as emu:
        emu.add_chute("ext", {"run": None})
        client = Client(emu, http)
        job_id = await client.new_job()
        await _finish(client, job_id, ["x"], status="error", result=None)
        assert (await client.complete(job_id)).status == 200
        assert emu.job(job_id).error_detail == "Failed to upload files: x"
