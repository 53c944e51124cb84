"""A raw HTTP client of the emulator for its contract tests: plain aiohttp, real loopback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from chutes_jobs.emulator import Emulator


@dataclass
class Answer:
    """What a client saw: status, headers, raw body (and the body as JSON when it is)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def detail(self) -> Any:
        return self.json["detail"]


class Client:
    """A raw HTTP client of one emulator, with the user's API key unless told otherwise."""

    def __init__(self, emu: Emulator, http: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.http = http

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": key or self.emu.api_key}

    async def call(self, method: str, url: str, **kwargs: Any) -> Answer:
        if not url.startswith("http"):
            url = self.emu.base_url + url
        async with self.http.request(method, url, allow_redirects=False, **kwargs) as resp:
            return Answer(resp.status, resp.headers, await resp.read())

    async def create(self, chute: str, method: str, body: Any = None, **kwargs: Any) -> Answer:
        kwargs.setdefault("headers", self.auth())
        return await self.call("POST", f"/jobs/{chute}/{method}", json=body or {}, **kwargs)

    async def new_job(self, chute: str = "ext", method: str = "run", body: Any = None) -> str:
        answer = await self.create(chute, method, body)
        assert answer.status == 200, answer.body
        job_id: str = answer.json["job_id"]
        return job_id

    async def get(self, job_id: str, **kwargs: Any) -> Answer:
        kwargs.setdefault("headers", self.auth())
        return await self.call("GET", f"/jobs/{job_id}", **kwargs)

    async def finish(self, job_id: str, body: Any, token_url: str | None = None) -> Answer:
        url = token_url or self.emu.job_status_url(job_id)
        return await self.call("POST", url, data=json.dumps(body).encode())

    async def complete(self, job_id: str, token_url: str | None = None) -> Answer:
        url = token_url or self.emu.job_status_url(job_id)
        return await self.call("PUT", url, json={"status": "done"})

    async def upload(self, url: str, path: str, data: bytes, filename: str = "f.bin") -> Answer:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=filename, content_type="application/octet-stream")
        form.add_field("path", path)
        return await self.call("PUT", url, data=form)

    async def download(self, job_id: str, file_id: str, **kwargs: Any) -> Answer:
        headers = {**self.auth(), **kwargs.pop("headers", {})}
        return await self.call("GET", f"/jobs/{job_id}/download/{file_id}", headers=headers)

    async def finished_job(self, files: dict[str, bytes], *, upload: bool = True) -> str:
        """An external-worker job finished with ``files`` listed (and uploaded) and completed."""
        job_id = await self.new_job()
        answer = await self.finish(
            job_id, {"status": "complete", "result": {}, "output_filenames": list(files)}
        )
        assert answer.status == 200, answer.body
        if upload:
            for name, url in answer.json["output_storage_urls"].items():
                assert (await self.upload(url, name, files[name])).status == 200
        assert (await self.complete(job_id)).status == 200
        return job_id
