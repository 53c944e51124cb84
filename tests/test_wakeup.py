"""``Wakeup``, what a thread waiting for a call on the loop thread waits on: set once, waited
for, its eventfd reused only once it is known to be clean, a lock beyond the pool's bound."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from chutes_jobs import _wakeup
from chutes_jobs._loop_thread import LoopThread
from chutes_jobs._wakeup import Wakeup

needs_eventfd = pytest.mark.skipif(not hasattr(os, "eventfd"), reason="no eventfd on this OS")


@pytest.fixture
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[_wakeup._Pool]:
    pool = _wakeup._Pool()
    monkeypatch.setattr(_wakeup, "_pool", pool)
    yield pool
    gc.collect()
    for fd in pool.free:
        os.close(fd)


def test_a_wait_ends_when_another_thread_sets_it(fresh_pool: _wakeup._Pool) -> None:
    wakeup = Wakeup()
    assert not wakeup.wait(0)
    assert not wakeup.wait(0.01)
    threading.Timer(0.05, wakeup.set).start()
    assert wakeup.wait()
    assert wakeup.wait(0)  # and stays set for any later look
    wakeup.close()
    assert wakeup.wait()


@needs_eventfd
def test_an_eventfd_waited_for_is_reused_and_starts_clean(fresh_pool: _wakeup._Pool) -> None:
    first = Wakeup()
    first.set()
    assert first.wait(1)
    first.close()
    assert fresh_pool.open == 1 and len(fresh_pool.free) == 1

    second = Wakeup()  # the same eventfd, its count back at 0
    assert fresh_pool.free == [] and fresh_pool.open == 1
    assert not second.wait(0.01)
    second.set()
    assert second.wait()


@needs_eventfd
def test_an_eventfd_not_waited_for_is_closed_not_reused(fresh_pool: _wakeup._Pool) -> None:
    wakeup = Wakeup()
    wakeup.set()  # its count is 1: a later user would see a wake-up that is not its own
    wakeup.close()
    assert fresh_pool.free == [] and fresh_pool.open == 1
    del wakeup
    gc.collect()
    assert fresh_pool.open == 0

    after = Wakeup()
    assert not after.wait(0.01)


def test_beyond_the_bound_wakeups_are_locks_and_work_alike(
    fresh_pool: _wakeup._Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_wakeup, "MAX_EVENTFDS", 2)
    wakeups = [Wakeup() for _ in range(5)]
    assert fresh_pool.open == (2 if hasattr(os, "eventfd") else 0)
    for wakeup in wakeups:
        assert not wakeup.wait(0)
    for wakeup in wakeups:
        threading.Thread(target=wakeup.set).start()
    assert all(wakeup.wait(5) for wakeup in wakeups)
    for wakeup in wakeups:
        wakeup.close()
    assert len(fresh_pool.free) == fresh_pool.open


def test_many_threads_calling_at_once_all_get_their_own_result(
    fresh_pool: _wakeup._Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More concurrent calls than eventfds: some wait on locks; none sees another's wake-up."""
    monkeypatch.setattr(_wakeup, "MAX_EVENTFDS", 4)
    loop = LoopThread("test-wakeups")
    results: dict[int, list[int]] = {}

    async def echo(value: int) -> int:
        await asyncio.sleep(0.001 * (value % 3))
        return value

    def caller(n: int) -> None:
        results[n] = [loop.run(echo(n * 1000 + i)) for i in range(30)]

    try:
        threads = [threading.Thread(target=caller, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        loop.stop()
    assert results == {n: [n * 1000 + i for i in range(30)] for n in range(12)}
    assert fresh_pool.open <= 4


@needs_eventfd
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this OS")
def test_a_forked_child_does_not_use_the_parents_eventfds() -> None:
    """The child's copies point at the parent's eventfds: using one would steal a wake-up."""
    warm = Wakeup()
    warm.set()
    warm.wait()
    warm.close()  # the pool now holds one free eventfd
    parent_free = list(_wakeup._pool.free)
    assert parent_free
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns of fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report whether its first wakeup took an inherited eventfd
        try:
            child = Wakeup()
            os.write(write, b"reused" if child._fd in parent_free else b"fresh")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 30
    answer = b""
    while not answer and time.monotonic() < deadline:
        answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"fresh"
    assert _wakeup._pool.free == parent_free  # the parent's pool is untouched
