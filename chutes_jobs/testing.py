"""pytest plugin of chutes-jobs (entry point ``pytest11``): a local Jobs API per test.

Fixtures:

- ``chutes_emulator``: a fresh, started :class:`chutes_jobs.emulator.Emulator` on a free
  loopback port, closed after the test. Its ``base_url`` and ``api_key`` point any client at it.

This module imports cheaply (the emulator and aiohttp load only when a fixture is used) and
never requires ``bittensor_wallet``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["chutes_emulator"]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio missing: explain on use, not at import

    @pytest.fixture
    def chutes_emulator() -> None:
        """Needs pytest-asyncio (``pip install chutes-jobs[test]``)."""
        pytest.fail("the chutes_emulator fixture needs pytest-asyncio installed")

else:

    @pytest_asyncio.fixture
    async def chutes_emulator() -> AsyncIterator[Emulator]:
        """A started emulator on 127.0.0.1 (free port, temporary data dir), closed afterwards."""
        from .emulator import Emulator

        async with Emulator(host="127.0.0.1", port=0) as emulator:
            yield emulator

    # ---------------------------------------------------------------------------------------
    # chutes_session: reserved. Once ChutesSession lands, a fixture here yields a session
    # bound to ``chutes_emulator`` (base_url + api_key). Do not import chutes_jobs.session at
    # module level: this plugin must stay cheap to import.
    # ---------------------------------------------------------------------------------------
