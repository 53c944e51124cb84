"""Fault suite: one scenario of ``benchmarks/_faults`` at reduced size (see its docstring)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import drops
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_a_dropped_download_ends_with_the_servers_bytes_and_never_an_incomplete_file(
    sweep: Sweep,
) -> None:
    """100 seeded cut offsets of one download, Range on and off: each ends with the server's
    sha256 (resumed at the cut where Range works), and a thread listing the folder meanwhile
    never sees an incomplete file under a final name."""
    assert_figures(await drops.run(drops.REDUCED, sweep, seed=SEED))
