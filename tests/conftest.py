"""Shared fixtures. Keep this small: each test module holds its own helpers."""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aioresponses import aioresponses

from chutes_jobs import RetryPolicy

# The suite runs with --import-mode=importlib, where test modules cannot import their
# neighbours: put this folder on the path so they can share helpers such as `cli_support`.
sys.path.insert(0, str(Path(__file__).parent))
import _postgres


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


#: ``ClientResponse(stream_writer=...)`` is new in aiohttp 3.14 (and required there).
_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse).parameters


class _MockedResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's ``stream_writer``."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER:
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server: ``CHUTES_TEST_POSTGRES_URL``, else a throwaway cluster."""
    url = os.environ.get(_postgres.URL_VARIABLE)
    if url:
        yield url
        return
    reason = _postgres.cannot_start_reason()
    if reason is not None:
        pytest.skip(reason)
    bindir = _postgres.server_bindir()
    assert bindir is not None
    cluster = _postgres.ThrowawayCluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database for this test alone (dropped afterwards)."""
    with _postgres.fresh_database(postgres_server) as url:
        yield url


CtrlC = Callable[[Callable[[], bool]], AbstractContextManager[None]]


@pytest.fixture
def ctrl_c() -> Iterator[CtrlC]:
    """``with ctrl_c(condition):`` presses Ctrl-C (a real SIGINT to the main thread, where
    pytest runs the test) once ``condition()`` holds, polled from another thread."""
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()

    @contextmanager
    def when(condition: Callable[[], bool]) -> Iterator[None]:
        done = threading.Event()

        def watch() -> None:
            deadline = time.monotonic() + 60
            while not done.wait(0.01) and time.monotonic() < deadline:
                if condition():
                    signal.pthread_kill(main, signal.SIGINT)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield when
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(params=["process", "thread"])
def sqlite_writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every SQLite ledger the test opens holds its file in a writer process, then a thread
    (unless the test names a writer): the two writers must behave alike."""
    from ledger_support import use_sqlite_writer

    writer: str = request.param
    use_sqlite_writer(monkeypatch, writer)
    return writer
