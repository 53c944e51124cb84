"""The emulator for blocking code: served from its own event loop in a daemon thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._loop_thread import LoopThread
from .emulator import Emulator

__all__ = ["in_background"]


@contextmanager
def in_background(emulator: Emulator | None = None) -> Iterator[Emulator]:
    """Serve ``emulator`` (default: ``Emulator()``) from a thread of its own; yield it started.

    For scripts, notebooks and blocking tests, where no event loop of yours would serve it::

        with in_background() as emu, chutes_jobs.sync.ChutesSession(
            base_url=emu.base_url, api_key=emu.api_key
        ) as s:
            ...

    Its plain methods and attributes (``base_url``, ``api_key``, ``add_chute``,
    ``faults.add``, ``counts``) may be used from the calling thread. It is closed (its
    temporary data dir removed) and its thread stopped when the block ends.
    """
    emulator = Emulator() if emulator is None else emulator
    loop = LoopThread("chutes-jobs-emulator")
    try:
        loop.run(emulator.start())
        yield emulator
    finally:
        try:
            if loop.running:
                loop.run(emulator.close())
        finally:
            loop.stop()
