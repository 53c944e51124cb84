"""The blocking API, for scripts and notebooks: ``from chutes_jobs.sync import ChutesSession``.

The same names as :mod:`chutes_jobs`, with the same parameters, return types, errors and
docstrings; ``ChutesSession``, ``JobHandle``, ``BulkResult``, ``Ledger`` and ``run_and_report``
are blocking twins of the async ones (their methods are made from the async methods, so the two
cannot drift), every other name is the very same object as in :mod:`chutes_jobs`::

    from chutes_jobs.sync import ChutesSession

    with ChutesSession.from_env() as s:
        job = s.create_job("my-chute", "generate", {"prompt": "a cat"})
        job.wait(timeout=3600)
        paths = job.download_outputs("out/", progress=True)

How it runs: each session owns an asyncio event loop in a daemon thread, where the async
session and its connections live; every call is handed to that loop and waited for.

* Any thread may call, several at once (a ``ThreadPoolExecutor`` of downloads on one session).
* Inside a running event loop (a Jupyter or IPython cell, a coroutine) calls work too: the
  calling loop waits like it would for any blocking call (in async code, prefer to ``await``
  the async API). From ``loop.run_in_executor`` they work without blocking that loop.
* Calling it from the session's own thread (a ``progress``/``on_job``/``key`` callback, an
  async job function) would deadlock and raises :class:`~chutes_jobs.BlockingCallError`.
* Ctrl-C while a call waits cancels that call on the loop and waits for its cleanup (up to
  60 s; Ctrl-C again stops waiting), then raises ``KeyboardInterrupt``: a download keeps its
  resumable ``.part``, ``submit_many`` records the creates under way and closes its ledger,
  no task is left running.
* ``watch()`` and ``submit_many()`` return plain iterators; closing one (or leaving its ``for``
  loop) closes the async iterator on the loop (``submit_many`` stops the run cleanly).
* ``run_and_report`` also takes a plain function: it runs in a worker thread.
"""

from __future__ import annotations

from chutes_jobs import (
    OUTCOME_KEY,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BlockingCallError,
    BulkOutcome,
    CallKind,
    ChutesError,
    ChuteSummary,
    ConfigurationError,
    ConflictError,
    DeleteFailedError,
    DownloadInProgressError,
    DownloadOutputsError,
    IncompleteTransferError,
    InstanceSummary,
    InsufficientSpaceError,
    Job,
    JobFailedError,
    JobOutcome,
    JobState,
    JobTimeoutError,
    JobUnreadableError,
    LedgerEntry,
    LedgerState,
    LedgerSummary,
    NotFoundError,
    OutputFile,
    OutputMissingError,
    OutputNameError,
    PermissionDeniedError,
    PollPolicy,
    ProgressCallback,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    TransferProgress,
    TransportError,
    UnsafePathError,
    UploadReport,
    UploadResult,
    UploadTargets,
    ValidationError,
    __version__,
    file_id_for,
)

from ._ledger import Ledger
from ._session import BulkResult, ChutesSession, JobHandle, SyncJobFunction, run_and_report

__all__ = [
    "OUTCOME_KEY",
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "BlockingCallError",
    "BulkOutcome",
    "BulkResult",
    "CallKind",
    "ChuteSummary",
    "ChutesError",
    "ChutesSession",
    "ConfigurationError",
    "ConflictError",
    "DeleteFailedError",
    "DownloadInProgressError",
    "DownloadOutputsError",
    "IncompleteTransferError",
    "InstanceSummary",
    "InsufficientSpaceError",
    "Job",
    "JobFailedError",
    "JobHandle",
    "JobOutcome",
    "JobState",
    "JobTimeoutError",
    "JobUnreadableError",
    "Ledger",
    "LedgerEntry",
    "LedgerState",
    "LedgerSummary",
    "NotFoundError",
    "OutputFile",
    "OutputMissingError",
    "OutputNameError",
    "PermissionDeniedError",
    "PollPolicy",
    "ProgressCallback",
    "ProtocolError",
    "RateLimitError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "SyncJobFunction",
    "TransferProgress",
    "TransportError",
    "UnsafePathError",
    "UploadReport",
    "UploadResult",
    "UploadTargets",
    "ValidationError",
    "__version__",
    "file_id_for",
    "run_and_report",
]
