"""The package version: the one place it is written (hatch reads it for the build).

Kept out of ``importlib.metadata``, whose import alone costs ~50 ms of every command's start.
"""

__version__ = "0.1.0"
