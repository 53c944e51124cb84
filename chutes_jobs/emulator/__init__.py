"""A local Chutes Jobs API: the same routes, bodies, codes and texts as the live server.

Usage::

    async with Emulator() as emu:
        ...  # point a client at emu.base_url with emu.api_key

From blocking code, ``with in_background() as emu:`` serves it from a thread of its own.
"""

from __future__ import annotations

from .background import in_background
from .emulator import Emulator
from .faults import Fault, FaultPlan
from .server import RequestRecord
from .store import JobRecord, User

__all__ = ["Emulator", "Fault", "FaultPlan", "JobRecord", "RequestRecord", "User", "in_background"]
