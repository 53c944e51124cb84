"""Fault suite: one scenario of ``benchmarks/_faults`` at reduced size (see its docstring)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import load
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_mixed_load_has_no_errors_and_no_memory_growth(sweep: Sweep) -> None:
    """64 tasks creating, polling and downloading through one session: no errors, and the
    RSS level at the end is within 16 MiB of the level after the warm-up."""
    assert_figures(await load.run(load.REDUCED, sweep, seed=SEED))
