"""``python -m benchmarks._faults.serve SPEC``: the emulator process of
:class:`~benchmarks._faults.server.EmulatorProcess` (a module of its own, which the package
does not import, so that ``-m`` runs it once)."""

from __future__ import annotations

import asyncio
import json
import sys

from benchmarks._faults.server import serve

if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
