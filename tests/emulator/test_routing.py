"""Routing as FastAPI/Starlette answer it: 404, 405, HEAD, trailing-slash 307, bare 500."""

from __future__ import annotations

from emu_client import Client


async def test_unknown_path_is_404_not_found(client: Client) -> None:
    for path in ("/nope", "/jobs", "/jobs/a/b/c"):
        answer = await client.call("GET", path)
        assert answer.status == 404
        assert answer.json == {"detail": "Not Found"}


async def test_wrong_method_and_head_are_405(client: Client) -> None:
    job_id = await client.new_job()
    for method, path in [
        ("PATCH", f"/jobs/{job_id}"),
        ("HEAD", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/upload"),
        ("GET", "/jobs/some-chute/some-method"),
    ]:
        answer = await client.call(method, path)
        assert answer.status == 405, (method, path)
        if method != "HEAD":
            assert answer.json == {"detail": "Method Not Allowed"}
    allow = (await client.call("PATCH", f"/jobs/{job_id}")).headers["Allow"]
    assert set(allow.split(", ")) == {"DELETE", "POST", "PUT", "GET"}


async def test_trailing_slash_redirects_with_307(client: Client) -> None:
    job_id = await client.new_job()
    answer = await client.call("GET", f"/jobs/{job_id}/?x=1", headers=client.auth())
    assert answer.status == 307
    assert answer.headers["Location"] == f"{client.emu.base_url}/jobs/{job_id}?x=1"


async def test_post_to_upload_path_is_a_create(client: Client) -> None:
    # POST /jobs/{id}/upload matches the create route first, as on the live router.
    answer = await client.call("POST", "/jobs/x/upload", headers=client.auth(), json={})
    assert answer.status == 404
    assert answer.detail == "Chute x not found"


async def test_unhandled_error_is_a_bare_500(client: Client) -> None:
    answer = await client.call("POST", "/jobs/demo/echo", headers=client.auth(), data=b"[1, 2]")
    assert answer.status == 500
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.body == b"Internal Server Error"
