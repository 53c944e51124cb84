"""The fault suite (``tests/faults``, marked ``faults``) runs only when asked: the plain test
command leaves it out and says how to run it (``python -m pytest -m faults``, which the nox
session ``faults`` runs; with nothing selected there, pytest would exit 5 and fail it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_plain_run_leaves_the_fault_suite_out_and_says_how_to_run_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/faults"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    left_out = re.search(r"no tests collected \((\d+) deselected\)", done.stdout)
    assert left_out is not None, done.stdout + done.stderr
    fault_tests = sum(
        len(re.findall(r"^(?:async )?def test_", path.read_text(), re.MULTILINE))
        for path in (ROOT / "tests" / "faults").glob("test_*.py")
    )
    assert int(left_out.group(1)) == fault_tests > 0
    assert f"{fault_tests} fault-suite tests left out: run them with" in done.stdout
