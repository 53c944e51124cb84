"""An emulator in its own process, for the shared-ledger chaos test (not a test module).

Prints one JSON line (base URL, API key, demo chute id); then, for each line ``report`` read on
stdin, one JSON line: the ``job_args`` of every job a create made, and how many create requests
arrived. Stops at the end of stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys

from chutes_jobs.emulator import Emulator


async def main() -> None:
    async with Emulator(port=0, schedule_delay=0.01) as emu:
        info = {"base_url": emu.base_url, "api_key": emu.api_key, "chute": emu.demo_chute_id}
        print(json.dumps(info), flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "report":
                jobs = {job_id: job.job_args for job_id, job in emu.store.jobs.items()}
                print(json.dumps({"jobs": jobs, "creates": emu.counts["create"]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
