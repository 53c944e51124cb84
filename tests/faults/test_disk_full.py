"""Fault suite: one scenario of ``benchmarks/_faults`` at reduced size (see its docstring)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import disk_full
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_a_full_disk_fails_the_file_that_cannot_fit_by_name_and_lands_the_rest(
    sweep: Sweep,
) -> None:
    """A 64 MiB output into a 20 MiB tmpfs beside four small ones: a chutes_jobs error naming
    the large file, the small ones land, the failed partial keeps no space (skipped where a
    tmpfs cannot be mounted)."""
    assert_figures(await disk_full.run(disk_full.REDUCED, sweep, seed=SEED))
