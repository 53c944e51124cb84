"""Fault suite: one scenario of ``benchmarks/_faults`` at reduced size (see its docstring)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import cancel
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_cancellation_leaks_no_descriptor_no_connection_no_incomplete_file(
    sweep: Sweep,
) -> None:
    """250 seeded cancellations of wait, download, download_outputs, upload_outputs and
    submit_many: descriptors and sockets back to what they were, no incomplete file under a
    final name, and a re-run ends right without creating any job twice."""
    assert_figures(await cancel.run(cancel.REDUCED, sweep, seed=SEED))
