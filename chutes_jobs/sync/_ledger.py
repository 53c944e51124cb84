"""The blocking ``Ledger``: a bulk run's ledger read (or written) from a script.

A twin of :class:`chutes_jobs.Ledger` (``.aio``) like the session's: its methods are made from
the async ones by :mod:`._twin` and run on an event loop thread of its own, where the ledger's
connections live (a PostgreSQL pool is bound to one loop).
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Self

import chutes_jobs as aio

from .._loop_thread import LoopThread
from ._twin import ClosingTwin, blocking

__all__ = ["Ledger"]


class Ledger(ClosingTwin):
    """Blocking twin of :class:`chutes_jobs.Ledger`, the batch's job book: the same methods,
    each waiting for its result. Open one with :meth:`open`; close it with :meth:`close` or a
    ``with`` block::

        with Ledger.open("run.db") as book:
            print(book.summary().counts)

    The ledger runs on an event loop in a daemon thread of its own; any thread may call.
    ``aio`` is the async ledger underneath (await it only on that loop).
    """

    def __init__(self, ledger: aio.Ledger, loop: LoopThread) -> None:
        self.aio: aio.Ledger = ledger
        self._loop = loop
        # An unclosed ledger (a notebook's) is closed when collected, or at exit.
        weakref.finalize(self, loop.stop, ledger.close, wait=True)

    @classmethod
    def open(cls, target: str | os.PathLike[str], **options: Any) -> Self:
        loop = LoopThread("chutes-jobs-sync-ledger")
        try:
            ledger = loop.run(aio.Ledger.open(target, **options))
        except BaseException:
            loop.stop()
            raise
        return cls(ledger, loop)

    open.__func__.__doc__ = (  # type: ignore[attr-defined]
        f"{aio.Ledger.open.__doc__}\n\n        Blocking twin: returns the blocking ledger."
    )

    def close(self) -> None:
        super().close()

    close.__doc__ = (
        f"{aio.Ledger.close.__doc__}\n\n        Then stops the ledger's event loop thread."
    )

    def __repr__(self) -> str:
        return f"<chutes_jobs.sync.Ledger {self.location}>"

    @property
    def location(self) -> str:
        """Where the ledger lives: the file path, or the URL without its password."""
        return self.aio.location

    get = blocking(aio.Ledger.get)
    get_many = blocking(aio.Ledger.get_many)
    entries = blocking(aio.Ledger.entries)
    counts = blocking(aio.Ledger.counts)
    summary = blocking(aio.Ledger.summary)
    mark_creating = blocking(aio.Ledger.mark_creating)
    mark_submitted = blocking(aio.Ledger.mark_submitted)
    mark_unknown = blocking(aio.Ledger.mark_unknown)
    mark_not_submitted = blocking(aio.Ledger.mark_not_submitted)
    mark_finished = blocking(aio.Ledger.mark_finished)
    mark_downloaded = blocking(aio.Ledger.mark_downloaded)
    mark_cancelled = blocking(aio.Ledger.mark_cancelled)
