"""The fault suite: ``python -m pytest -m faults`` (CI: the nox session ``faults``).

Each test runs one scenario of ``benchmarks/_faults`` at reduced size (the same code that
``python -m benchmarks.faults`` runs at full size) and asserts every figure it reports; the
summary at the end prints them all, one line each. The
tests are marked ``faults`` and left out of a run without a ``-m`` expression, so the plain
test command stays quick; the summary then says how many were left out and how to run them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The scenarios live in benchmarks/, beside tests/; this folder holds `fault_support`.
for _folder in (Path(__file__).resolve().parents[2], Path(__file__).resolve().parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from fault_support import MEASURED, SEED  # noqa: E402

from benchmarks._faults.report import Sweep  # noqa: E402

MARK = "faults"
_deselected: list[pytest.Item] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the fault suite out unless a marker expression (``-m faults``) was given. Run
    the load first (its memory growth could hide in memory other scenarios freed) and the
    secret sweep, which reports on what the other scenarios produced, last."""
    if not config.option.markexpr:
        _deselected[:] = [item for item in items if item.get_closest_marker(MARK)]
        if _deselected:
            config.hook.pytest_deselected(items=_deselected)
            items[:] = [item for item in items if not item.get_closest_marker(MARK)]
    order = {"test_load.py": -1, "test_secrets_sweep.py": 1}
    items.sort(key=lambda item: order.get(item.path.name, 0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the fault suite measured, one line each as ``python -m benchmarks.faults``
    prints them; or, when it was left out, how to run it."""
    if MEASURED:
        terminalreporter.write_sep("=", f"fault-suite figures (reduced sizes, seed {SEED})")
        for figure in MEASURED:
            terminalreporter.write_line(figure.line())
    if _deselected:
        terminalreporter.write_line(
            f"{len(_deselected)} fault-suite tests left out: run them with "
            "`python -m pytest -m faults`"
        )


_SWEEP = Sweep()


@pytest.fixture
def sweep() -> Iterator[Sweep]:
    """The one sweep of the whole run, receiving this test's log records."""
    with _SWEEP.capture():
        yield _SWEEP
