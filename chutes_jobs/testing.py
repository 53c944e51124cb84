"""pytest plugin of chutes-jobs (entry point ``pytest11``): a local Jobs API per test.

Fixtures:

- ``chutes_emulator``: a fresh, started :class:`chutes_jobs.emulator.Emulator` on a free
  loopback port with a temporary data dir, closed after the test. Point any client at its
  ``base_url`` with its ``api_key``; the ``demo`` chute is registered.
- ``chutes_session``: a :class:`chutes_jobs.ChutesSession` bound to ``chutes_emulator`` (its
  ``base_url`` and ``api_key``), closed after the test.
- ``chutes_sync_emulator``: for blocking tests, an emulator served from a thread of its own
  (:func:`chutes_jobs.emulator.in_background`), closed after the test.
- ``chutes_sync_session``: a blocking :class:`chutes_jobs.sync.ChutesSession` bound to
  ``chutes_sync_emulator``, closed after the test. Neither needs pytest-asyncio.

This module imports cheaply (the emulator and aiohttp load only when a fixture is used) and
never requires ``bittensor_wallet``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .emulator import Emulator
    from .session import ChutesSession
    from .sync import ChutesSession as SyncChutesSession

__all__ = ["chutes_emulator", "chutes_session", "chutes_sync_emulator", "chutes_sync_session"]


async def _chutes_emulator() -> AsyncIterator[Emulator]:
    """A started emulator on 127.0.0.1 (free port, temporary data dir), closed afterwards."""
    from .emulator import Emulator

    async with Emulator(host="127.0.0.1", port=0) as emulator:
        yield emulator


def _needs_pytest_asyncio() -> None:
    pytest.fail("the chutes_emulator fixture needs pytest-asyncio (pip install chutes-jobs[test])")


def _async_fixture(func: Any, name: str) -> Any:
    """``func`` as an async fixture, or a fixture explaining why it cannot be one."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - explain on use, never fail at import
        return pytest.fixture(_needs_pytest_asyncio, name=name)
    return pytest_asyncio.fixture(func, name=name)


chutes_emulator = _async_fixture(_chutes_emulator, "chutes_emulator")


async def _chutes_session(chutes_emulator: Emulator) -> AsyncIterator[ChutesSession]:
    """A :class:`chutes_jobs.ChutesSession` bound to ``chutes_emulator`` (its URL and API key)."""
    from .session import ChutesSession

    async with ChutesSession(
        base_url=chutes_emulator.base_url, api_key=chutes_emulator.api_key
    ) as session:
        yield session


chutes_session = _async_fixture(_chutes_session, "chutes_session")


@pytest.fixture
def chutes_sync_emulator() -> Iterator[Emulator]:
    """A started emulator serving from its own thread (free port, temporary data dir)."""
    from .emulator import in_background

    with in_background() as emulator:
        yield emulator


@pytest.fixture
def chutes_sync_session(chutes_sync_emulator: Emulator) -> Iterator[SyncChutesSession]:
    """A blocking :class:`chutes_jobs.sync.ChutesSession` bound to ``chutes_sync_emulator``."""
    from .sync import ChutesSession

    with ChutesSession(
        base_url=chutes_sync_emulator.base_url, api_key=chutes_sync_emulator.api_key
    ) as session:
        yield session
