"""Upload benchmark: chutes-jobs multipart body vs curl -F vs the official helper's pattern.

    /work/venv/bin/python benchmarks/bench_upload.py [--size-mib 1024] [--reps 3] [--matrix]

The server (a streaming multipart sink that counts and discards bytes) runs in a subprocess;
every Python client runs in its own subprocess too. Clients: chutes-jobs
(``multipart_upload_body``), curl (``-F file=@... -F path=...``), the official helper's pattern
(``aiohttp.FormData`` over an open file, a new ClientSession per call) and an async-generator
body (chunked encoding) for reference. ``--matrix`` adds other upload chunk sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiofiles
import aiohttp
from _common import (
    MIB,
    Measure,
    best_runs,
    make_file,
    median_run,
    print_all_runs,
    print_table,
    run_client,
    run_external,
    start_server,
)

from chutes_jobs import transfer

NAME = "sub/out.bin"


async def _put(session: aiohttp.ClientSession, url: str, data: Any) -> dict[str, Any]:
    async with session.put(url, data=data) as response:
        response.raise_for_status()
        answer: dict[str, Any] = await response.json()
        return answer


async def chutes_jobs_client(url: str, source: Path) -> tuple[Measure, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, Measure() as m:
        answer = await _put(session, url, transfer.multipart_upload_body(source, NAME))
    return m, answer


async def helper_client(url: str, source: Path) -> tuple[Measure, dict[str, Any]]:
    async with Measure() as m, aiohttp.ClientSession() as session:
        with source.open("rb") as f:  # the pattern being measured
            form = aiohttp.FormData()
            form.add_field("file", f, filename=source.name, content_type="application/octet-stream")
            form.add_field("path", NAME)
            answer = await _put(session, url, form)
    return m, answer


async def generator_client(url: str, source: Path) -> tuple[Measure, dict[str, Any]]:
    async def chunks() -> AsyncIterator[bytes]:
        async with aiofiles.open(source, "rb") as f:
            while chunk := await f.read(MIB):
                yield chunk

    async with aiohttp.ClientSession() as session, Measure() as m:
        body = aiohttp.MultipartWriter("form-data")
        part = body.append(chunks())
        part.set_content_disposition("form-data", name="file", filename=source.name)
        body.append(NAME).set_content_disposition("form-data", name="path")
        answer = await _put(session, url, body)
    return m, answer


CLIENTS = {
    "chutes-jobs": chutes_jobs_client,
    "helper": helper_client,
    "async-gen": generator_client,
}


def client_main(name: str, url: str, source: str) -> None:
    opts: dict[str, Any] = json.loads(name[name.index("{") :]) if "{" in name else {}
    for key, value in opts.items():
        setattr(transfer, key, value)
    client = CLIENTS[name.split()[0] if not opts else "chutes-jobs"]
    m, answer = asyncio.run(client(url, Path(source)))
    size = Path(source).stat().st_size
    assert answer["sizes"] == {"file": size, "path": len(NAME)}, answer
    print(json.dumps({**m.result(size), "chunked": answer["chunked"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--matrix", action="store_true")
    parser.add_argument("--dir", help="folder for the source file (default: a temp dir)")
    args = parser.parse_args()
    size = args.size_mib * MIB
    clients = list(CLIENTS)
    if args.matrix:
        clients += [f"cj {json.dumps({'UPLOAD_CHUNK': k * 1024})}" for k in (256, 4096)]
    with tempfile.TemporaryDirectory(prefix="bench-ul-", dir=args.dir) as tmp:
        src = make_file(Path(tmp) / "out.bin", size)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*clients, "curl"]}
        with start_server("upload", src) as base:
            url = f"{base}/upload"
            curl = ["curl", "-s", "-o", "/dev/null", "-f", "-X", "PUT", "-H", "Expect:"]
            curl += ["-F", f"file=@{src};type=application/octet-stream", "-F", f"path={NAME}"]
            for _ in range(args.reps):
                for name in clients:
                    runs[name].append(run_client(__file__, name, url, str(src)))
                runs["curl"].append(run_external([*curl, url], size))
    rows = {name: median_run(r) for name, r in runs.items()}
    best = best_runs(runs)
    title = f"upload {args.size_mib} MiB, median of {args.reps} (loopback, multipart sink)"
    print_table(title, rows, ["helper", "curl"])
    print_table("best run of each", best, ["helper", "curl"])
    print("chunked encoding:", {n: r.get("chunked") for n, r in rows.items() if n != "curl"})
    print_all_runs(runs)


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_main(*sys.argv[2:5])
    else:
        main()
