"""chutes-jobs: an asyncio-first client for the Chutes Jobs API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .bulk import BulkOutcome, BulkResult
from .bulk.ledger import Ledger, LedgerEntry, LedgerState, LedgerSummary
from .errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ChutesError,
    ConfigurationError,
    ConflictError,
    DeleteFailedError,
    DownloadOutputsError,
    IncompleteTransferError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    OutputMissingError,
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
from .models import ChuteSummary, InstanceSummary, Job, JobState, OutputFile, file_id_for
from .polling import PollPolicy
from .retry import CallKind, RetryPolicy
from .session import ChutesSession, run_and_report
from .transfer import ProgressCallback, TransferProgress
from .worker import UploadReport, UploadResult, UploadTargets

try:
    __version__ = version("chutes-jobs")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "BulkOutcome",
    "BulkResult",
    "CallKind",
    "ChuteSummary",
    "ChutesError",
    "ChutesSession",
    "ConfigurationError",
    "ConflictError",
    "DeleteFailedError",
    "DownloadOutputsError",
    "IncompleteTransferError",
    "InstanceSummary",
    "Job",
    "JobFailedError",
    "JobHandle",
    "JobState",
    "JobTimeoutError",
    "Ledger",
    "LedgerEntry",
    "LedgerState",
    "LedgerSummary",
    "NotFoundError",
    "OutputFile",
    "OutputMissingError",
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
