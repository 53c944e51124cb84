"""What every fault-suite test does with its scenario's figures."""

from __future__ import annotations

import pytest

from benchmarks._faults.report import Figure

#: The seed of every scenario here (``python -m benchmarks.faults --seed`` picks others).
SEED = 0
#: Every figure the tests measured, in order: the conftest prints them in pytest's summary.
MEASURED: list[Figure] = []


def assert_figures(figures: list[Figure]) -> None:
    """Every figure meets its claim (the failing lines are the message); a scenario that
    cannot run here is skipped with its reason. The figures are kept for the summary."""
    MEASURED.extend(figures)
    skipped = [f.skipped for f in figures if f.skipped is not None]
    if skipped:
        pytest.skip("; ".join(skipped))
    assert figures, "the scenario reported nothing"
    failing = [f.line() for f in figures if not f.ok]
    assert not failing, "\n".join(failing)
