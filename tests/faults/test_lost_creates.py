"""Fault suite: one scenario of ``benchmarks/_faults`` at reduced size (see its docstring)."""

from __future__ import annotations

import pytest
from fault_support import SEED, assert_figures

from benchmarks._faults import lost_creates
from benchmarks._faults.report import Sweep

pytestmark = pytest.mark.faults


async def test_a_create_whose_answer_is_lost_is_sent_once_reported_unknown_never_resent(
    sweep: Sweep,
) -> None:
    """Creates whose answer is dropped or cut short (hotkey-signed): one request each, each
    reported UNKNOWN, and a re-run with the same ledger sends none of them again."""
    assert_figures(await lost_creates.run(lost_creates.REDUCED, sweep, seed=SEED))
