"""``submit_many``: thousands of jobs with bounded concurrency, group rate limiting and a ledger.

How a run is built, top-down (``run``):

* a *feeder* reads the inputs lazily: it takes the next input only while fewer than
  ``max_in_flight`` inputs are taken and not yet handed to the consumer, so a paused consumer
  pauses the reading (a million inputs are never materialized);
* ``concurrency`` *submitters* take inputs one by one: key, ledger lookup, create
  (``create``);
* with ``wait=True`` or ``download_to=``, each created job gets a *follower* task that polls it
  (at most ``poll_concurrency`` GETs at once) and downloads its outputs (at most
  ``download_concurrency`` jobs at once) (``follow``);
* results go to a queue the consumer reads, in completion order.

Creates are billed and not idempotent (``docs/PROTOCOL.md``, "Creating a job"). A 429 with
Retry-After pauses every submitter together (one :class:`RateGate`, ``gate``), checked right
before each create is sent; a daily-quota 429 stops all further creates. With a ledger, every
step of every key is durable before the next one, so a re-run skips what was submitted, resumes
waiting and downloading, and never creates a job twice. A create whose answer was lost is
recorded ``unknown`` and reported, never re-sent unless ``resubmit_unknown=True``.

Stopping (the consumer's task cancelled, ``aclose()``, or breaking out of the loop): no new
input is read and no new create starts; creates under way finish and are recorded (after
``cancel_grace`` seconds they are cancelled and recorded ``unknown``); polling and downloads stop
(the ledger resumes them on the next run).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

from ..errors import DuplicateInputError as DuplicateInputError
from ..errors import QuotaExceededError, UnknownCreateError
from ..models import Job
from ..polling import PollPolicy
from ..transfer import ProgressCallback
from .gate import RateGate
from .options import DEFAULT_CANCEL_GRACE, bulk_options, input_key
from .result import BulkOutcome, BulkResult

if TYPE_CHECKING:
    from .._http import Transport
    from .ledger import Ledger
    from .run import BulkRun

__all__ = [
    "BulkOutcome",
    "BulkResult",
    "QuotaExceededError",
    "RateGate",
    "UnknownCreateError",
    "input_key",
    "submit_many",
]


async def submit_many(
    session: Transport,
    chute_id: str,
    method: str,
    inputs: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int = 32,
    wait: bool = False,
    download_to: str | PathLike[str] | None = None,
    ledger: str | PathLike[str] | None = None,
    key: Callable[[Mapping[str, Any]], str] | None = None,
    disk_gb: float | None = None,
    poll: PollPolicy | None = None,
    poll_concurrency: int | None = None,
    download_concurrency: int = 4,
    wait_timeout: float | None = None,
    resubmit_unknown: bool = False,
    max_in_flight: int | None = None,
    cancel_grace: float = DEFAULT_CANCEL_GRACE,
    progress: ProgressCallback | None = None,
    on_job: Callable[[Job], None] | None = None,
) -> AsyncGenerator[BulkResult, None]:
    """Create one job per input and yield a :class:`BulkResult` per input as each completes.

    See :meth:`ChutesSession.submit_many` for the arguments.
    """
    # Imported here: the ledger (sqlite3, its writer) and the run's machinery are not needed
    # until a run starts, and a CLI command that never runs one starts faster without them.
    from .ledger import Ledger, SharedLedger
    from .run import BulkRun
    from .shared import SharedRun

    options = bulk_options(
        chute_id, method, concurrency=concurrency, wait=wait, download_to=download_to, key=key,
        disk_gb=disk_gb, poll=poll, poll_concurrency=poll_concurrency,
        download_concurrency=download_concurrency, wait_timeout=wait_timeout,
        resubmit_unknown=resubmit_unknown, max_in_flight=max_in_flight, cancel_grace=cancel_grace,
        progress=progress, on_job=on_job,
    )  # fmt: skip
    opened = await Ledger.open(ledger) if ledger is not None else None
    if isinstance(opened, SharedLedger):
        run: BulkRun = SharedRun(session, options, opened)
    else:
        run = BulkRun(session, options, opened)
    main = asyncio.create_task(run.observed_main(inputs))
    try:
        while (result := await run.results.get()) is not None:
            run.in_flight.release()
            yield result
        await main
        if run.input_error is not None:
            raise run.input_error
    finally:
        await _shut_down(run, main, opened)


async def _shut_down(run: BulkRun, main: asyncio.Task[None], ledger: Ledger | None) -> None:
    """Stop the run and close the ledger, even if the caller is cancelled again meanwhile."""

    async def shut_down() -> None:
        try:
            # Also when main has ended: a run whose start failed (a shared ledger refusing
            # the batch) or whose claims broke off leaves submitters waiting for work.
            await run.stop(main)
        finally:
            run.counters.tell(run.taken, final=True)
            if ledger is not None:
                await ledger.close()

    await asyncio.shield(asyncio.ensure_future(shut_down()))
