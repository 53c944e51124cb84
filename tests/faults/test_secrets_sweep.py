"""Fault suite: the secret sweep (``benchmarks._faults.secrets``), run after every other
fault-suite test (the conftest orders it last)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import secrets
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_no_secret_in_any_log_record_exception_or_repr_of_the_suite(sweep: Sweep) -> None:
    """Every log record (DEBUG included), exception and repr the fault suite produced, and
    those of calls made with refused keys, tokens and a hotkey: no API key, OAuth token,
    worker token or hotkey seed in any of them. Run alone, it sweeps its own calls."""
    assert_figures(await secrets.run(secrets.REDUCED, sweep, seed=SEED))
