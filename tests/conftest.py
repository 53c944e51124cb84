"""Shared fixtures. Keep this small: each test module holds its own helpers."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aioresponses import aioresponses

from chutes_jobs import RetryPolicy


class FakeTime:
    """A clock and a sleep that never wait: sleeping advances the clock and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, **settings: Any) -> RetryPolicy:
        """A :class:`RetryPolicy` on this fake time (``settings`` override its fields)."""
        return RetryPolicy(sleep=self.sleep, monotonic=self.monotonic, **settings)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


class _SentBody:
    output_size = 0


class _MockedResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's ``stream_writer``."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentBody())
        super().__init__(method, url, **kwargs)


@pytest.fixture
def http_mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """aioresponses: every aiohttp request is answered by what the test registers."""
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _MockedResponse)
    with aioresponses() as mocked:
        yield mocked


@pytest.fixture
def http1_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The method of every request sent over an HTTP/1.1 pool (``Http1Pool.send``), in order."""
    from chutes_jobs._http.http1 import Http1Pool

    sent: list[str] = []
    send = Http1Pool.send

    async def recorded(self: Http1Pool, method: str, *args: Any) -> Any:
        sent.append(method)
        return await send(self, method, *args)

    monkeypatch.setattr(Http1Pool, "send", recorded)
    return sent


# ----------------------------------------------------------------------------- PostgreSQL
# A real server for the shared-ledger tests: $CHUTES_TEST_POSTGRES_URL (a role that may create
# databases) when set, else a throwaway cluster (initdb into a temp folder, a free port, the
# socket in that folder, stopped and removed at the end of the session), else the tests skip
# with the reason.

_PG_BIN_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in _PG_BIN_DIRS:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> list[str]:
    """The command prefix running a server tool: as ``postgres`` when we are root (the
    server refuses to run as root), creating that user if missing."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server whose role may create databases."""
    given = os.environ.get("CHUTES_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found and "
                    "CHUTES_TEST_POSTGRES_URL not set")  # fmt: skip
    prefix = _as_server_user()
    # not under pytest's temp root: that one is private to us, the server user cannot enter it
    root = Path(tempfile.mkdtemp(prefix="chutes-jobs-pg-"))
    if prefix:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        start = [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log")]
        subprocess.run([*start, "-w", "start"], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"starting a PostgreSQL server failed: {exc.stderr.decode()}") from exc
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(_postgres_server: str) -> Iterator[str]:
    """The URL of a fresh, empty database on the test server (dropped after the test)."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(_postgres_server)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(_postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
