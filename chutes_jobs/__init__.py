"""chutes-jobs: an asyncio-first client for the Chutes Jobs API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BlockingCallError,
    ChutesError,
    ConfigurationError,
    ConflictError,
    DeleteFailedError,
    DownloadInProgressError,
    DownloadOutputsError,
    IncompleteTransferError,
    InsufficientSpaceError,
    JobFailedError,
    JobTimeoutError,
    JobUnreadableError,
    NotFoundError,
    OutputMissingError,
    OutputNameError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnsafePathError,
    ValidationError,
)
from .job import JobHandle
from .models import (
    OUTCOME_KEY,
    ChuteSummary,
    InstanceSummary,
    Job,
    JobOutcome,
    JobState,
    OutputFile,
    file_id_for,
)
from .polling import PollPolicy
from .retry import CallKind, RetryPolicy
from .session import ChutesSession, run_and_report
from .transfer import ProgressCallback, TransferProgress
from .worker import UploadReport, UploadResult, UploadTargets

if TYPE_CHECKING:
    from .bulk import BulkOutcome, BulkResult
    from .bulk.ledger import Ledger, LedgerEntry, LedgerState, LedgerSummary

#: Imported on first use: bulk runs need the ledger (sqlite3, threads), which one-job
#: commands such as ``chutes-jobs status`` never do.
_LAZY = {
    "BulkOutcome": ".bulk",
    "BulkResult": ".bulk",
    **dict.fromkeys(("Ledger", "LedgerEntry", "LedgerState", "LedgerSummary"), ".bulk.ledger"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


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
