"""A local Chutes Jobs API: the same routes, bodies, codes and texts as the live server.

Usage::

    async with Emulator() as emu:
        ...  # point a client at emu.base_url with emu.api_key
"""

from __future__ import annotations

from .emulator import Emulator
from .faults import Fault, FaultPlan
from .server import RequestRecord
from .store import JobRecord, User

__all__ = ["Emulator", "Fault", "FaultPlan", "JobRecord", "RequestRecord", "User"]
