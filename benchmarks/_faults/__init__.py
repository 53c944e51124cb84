"""The fault suite's scenarios: one implementation each, run at full size by
``python -m benchmarks.faults`` (which lists them) and at reduced size by ``pytest -m faults``
(``tests/faults``).

Each scenario module has ``Size``, ``FULL``, ``REDUCED`` and ``async run(size, sweep, *,
seed) -> list[Figure]`` (``report.Figure``; ``report.Sweep`` looks for secrets in what they
produce).
"""
