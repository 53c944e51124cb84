"""The fault suite's scenarios: one implementation each, run at full size by
``python -m benchmarks.faults`` and at reduced size by ``pytest -m faults`` (``tests/faults``).

Each scenario module has ``Size``, ``FULL``, ``REDUCED`` and ``async run(size, sweep, *,
seed) -> list[Figure]``; :data:`SCENARIOS` lists them in the order they run (the secret sweep
last: it reports on everything the others produced).
"""

from __future__ import annotations

from types import ModuleType

from . import bursts, cancel, disk_full, drops, hostile, load, lost_creates, secrets
from .report import Figure, Sweep

__all__ = ["SCENARIOS", "Figure", "Sweep"]

#: name -> module, in running order.
SCENARIOS: dict[str, ModuleType] = {
    "drops": drops,
    "bursts": bursts,
    "lost": lost_creates,
    "names": hostile,
    "cancel": cancel,
    "disk-full": disk_full,
    "load": load,
    "secrets": secrets,
}
