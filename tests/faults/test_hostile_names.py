"""Fault suite: one scenario of ``benchmarks/_faults`` at reduced size (see its docstring)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import hostile
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_hostile_output_names_never_write_outside_the_destination(sweep: Sweep) -> None:
    """1,000 generated hostile names (and links waiting in the destination): nothing outside
    the destination changes, every refused file is named in its error, and every file
    written holds the server's bytes inside the destination."""
    assert_figures(await hostile.run(hostile.REDUCED, sweep, seed=SEED))
