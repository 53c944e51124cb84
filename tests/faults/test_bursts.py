"""Fault suite: one scenario of ``benchmarks/_faults`` at reduced size (see its docstring)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import bursts
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_bursts_of_429_and_5xx_lose_no_job_duplicate_no_create_lose_no_upload(
    sweep: Sweep,
) -> None:
    """1,000 creates through submit_many under bursts of 429/503, then 50 workers' finish,
    upload and complete under bursts of 429/500/502/503: the emulator holds exactly one job
    per input, every job completed, every file stored with the bytes sent."""
    assert_figures(await bursts.run(bursts.REDUCED, sweep, seed=SEED))
