"""What every fault-suite test does with its scenario's figures."""

from __future__ import annotations

import pytest

from benchmarks._faults.report import Figure

#: The seed of every scenario here (``python -m benchmarks.faults --seed`` picks others).
SEED = 0
#: Every figure the tests measured, in order: the conftest prints them in pytest's summary.
MEASURED: list[Figure] = []


def assert_figures(figures: list[Figure]) -> None:
    """Every figure that ran meets its claim (the failing lines are the message); then, if
    part of the scenario cannot run here, the test is skipped with the reason (a skip never
    hides a failing figure). The figures are kept for the summary."""
    MEASURED.extend(figures)
    assert figures, "the scenario reported nothing"
    failing = [f.line() for f in figures if f.skipped is None and not f.ok]
    assert not failing, "\n".join(failing)
    skipped = [f.skipped for f in figures if f.skipped is not None]
    if skipped:
        pytest.skip("; ".join(skipped))
