"""``LoopThread``, under the blocking API and ``in_background``: interrupts, a second Ctrl-C,
exceptions escaping onto the loop, stopping with calls in flight, re-entrance."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from chutes_jobs import BlockingCallError
from chutes_jobs._loop_thread import LoopThread


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread("test-loop")
    yield thread
    thread.stop()


def test_a_second_ctrl_c_stops_waiting_for_a_slow_cleanup(
    loop_thread: LoopThread, ctrl_c: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started, cleaning, cleaned = threading.Event(), threading.Event(), threading.Event()

    async def slow_to_stop() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaning.set()
            await asyncio.sleep(60)  # cancelled once only: this cleanup is not interrupted
            cleaned.set()

    with (
        caplog.at_level(logging.WARNING, "chutes_jobs"),
        ctrl_c(started.is_set),
        ctrl_c(lambda: "interrupt again" in caplog.text),
        pytest.raises(KeyboardInterrupt),
    ):
        loop_thread.run(slow_to_stop())
    assert cleaning.is_set() and not cleaned.is_set()  # still cleaning up: we stopped waiting
    assert "slow_to_stop to clean up" in caplog.text


def test_an_interrupt_escaping_onto_the_loop_does_not_kill_it(loop_thread: LoopThread) -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    async def fine() -> int:
        return 7

    with pytest.raises(KeyboardInterrupt):
        loop_thread.run(interrupted())
    assert loop_thread.run(fine()) == 7


def test_stop_cancels_the_calls_of_other_threads(loop_thread: LoopThread) -> None:
    started = threading.Event()

    async def long() -> None:
        started.set()
        await asyncio.sleep(60)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(loop_thread.run, long())
        assert started.wait(10)
        loop_thread.stop()
        with pytest.raises(concurrent.futures.CancelledError):
            waiting.result()
    assert not loop_thread.running


def test_a_call_from_the_loops_own_thread_is_refused_unrun(loop_thread: LoopThread) -> None:
    ran: list[str] = []

    async def inner() -> None:
        ran.append("inner")

    async def outer() -> None:
        with pytest.raises(BlockingCallError, match="deadlock"):
            loop_thread.run(inner())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be one
        loop_thread.run(outer())
    assert ran == []


def test_an_iterator_left_early_closes_the_async_generator(loop_thread: LoopThread) -> None:
    closed = threading.Event()

    async def numbers() -> Any:
        try:
            for n in range(10):
                yield n
        finally:
            closed.set()

    items = loop_thread.iterate(numbers())
    assert next(items) == 0
    del items  # what leaving a for loop does in CPython
    assert closed.is_set()


def test_a_call_cancelled_before_its_first_step_still_ends() -> None:
    """The waiting thread is released even when the task never ran a step."""
    from chutes_jobs._loop_thread import _Call

    async def never() -> None:
        raise AssertionError("not run")

    call = _Call(never())

    async def start_then_cancel() -> None:
        call.start()
        call.cancel()  # before the task's first step
        await asyncio.sleep(0.01)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, not left unawaited
        asyncio.run(start_then_cancel())
    assert call.wait(0)
    with pytest.raises(concurrent.futures.CancelledError):
        call.outcome()
