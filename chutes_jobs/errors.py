"""The exception hierarchy of chutes-jobs.

Every error raised by the library derives from :class:`ChutesError`. Errors are grouped by
where things fail: configuration (before anything is sent), transport (the connection),
protocol (the server answered something that is not the API), status (the API said no), and
job outcomes. Messages never contain secrets: URLs are redacted before they get here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._redact import redact

if TYPE_CHECKING:
    from .models import Job

__all__ = [
    "APIStatusError",
    "AnswerTooLargeError",
    "AuthenticationError",
    "BadRequestError",
    "ChutesError",
    "ConfigurationError",
    "ConflictError",
    "DeleteFailedError",
    "DownloadOutputsError",
    "DuplicateInputError",
    "IncompleteTransferError",
    "JobFailedError",
    "JobTimeoutError",
    "LeaseLostError",
    "LedgerError",
    "NotFoundError",
    "OutputMissingError",
    "PermissionDeniedError",
    "ProtocolError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "TransportError",
    "UnknownCreateError",
    "UnsafePathError",
    "ValidationError",
    "error_for_status",
]

EXCERPT_CHARS = 200


class ChutesError(Exception):
    """Base class of every error raised by chutes-jobs."""

    #: How many HTTP attempts were made before this error was raised (0: none was sent).
    attempts: int = 0

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        """The redacted, human-readable message."""
        return str(self.args[0]) if self.args else ""


class ConfigurationError(ChutesError, ValueError):
    """Settings or arguments are missing, contradictory or invalid; nothing was sent."""


class TransportError(ChutesError):
    """The connection failed or dropped before a complete answer arrived.

    :attr:`connect_failed` is true when no connection was established, so the request provably
    never reached the server (the only transport failure after which a create is re-sent).
    """

    def __init__(
        self, message: str, *, method: str = "", url: str = "", connect_failed: bool = False
    ) -> None:
        self.method = method
        self.url = redact(url)
        self.connect_failed = connect_failed
        super().__init__(message)


class AnswerTooLargeError(TransportError):
    """The answer's body is larger than the library accepts (``MAX_ANSWER_BYTES``, 32 MiB).

    The same answer would come again, so the call is not retried. The request did reach the
    server: a create that ends with this error may have created its job.
    """


class RequestTimeoutError(TransportError, TimeoutError):
    """The server did not answer within the configured timeout."""


class IncompleteTransferError(TransportError):
    """A body ended before the number of bytes its Content-Length announced."""


class ProtocolError(ChutesError):
    """The server answered something that is not the API (HTML, truncated or invalid JSON)."""

    def __init__(
        self, message: str, *, status: int, body_excerpt: str, method: str = "", url: str = ""
    ) -> None:
        self.status = status
        self.body_excerpt = redact(body_excerpt[:EXCERPT_CHARS])
        self.method = method
        self.url = redact(url)
        super().__init__(f"{message} (HTTP {status}): {self.body_excerpt!r}")


class APIStatusError(ChutesError):
    """The API answered with an error status."""

    def __init__(
        self,
        *,
        status: int,
        detail: Any,
        method: str,
        url: str,
        body_excerpt: str = "",
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.url = redact(url)
        self.body_excerpt = redact(body_excerpt[:EXCERPT_CHARS])
        self.attempts = attempts
        super().__init__(f"{method} {self.url} -> HTTP {status}: {_detail_text(detail)}")


class BadRequestError(APIStatusError):
    """HTTP 400: the request was refused (bad disk size, job already finished, ...)."""


class AuthenticationError(APIStatusError):
    """HTTP 401: missing or invalid credentials, signature, nonce or job token."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the credentials are valid but not allowed to do this."""


class NotFoundError(APIStatusError):
    """HTTP 404: no such job, chute, method or file (or it does not belong to you)."""


class ConflictError(APIStatusError):
    """HTTP 409: the request conflicts with the resource's current state."""


class ValidationError(APIStatusError):
    """HTTP 422: FastAPI rejected the request; :attr:`errors` holds the parsed ``detail`` list."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The FastAPI validation entries (``type``, ``loc``, ``msg``, ...)."""
        if isinstance(self.detail, list):
            return [e for e in self.detail if isinstance(e, dict)]
        return []


class RateLimitError(APIStatusError):
    """HTTP 429: rate limited or daily quota exceeded; :attr:`retry_after` in seconds if sent."""

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)

    @property
    def is_quota(self) -> bool:
        """True when the server says the daily job quota is exhausted (waiting will not help)."""
        return "quota" in _detail_text(self.detail).lower()


class ServerError(APIStatusError):
    """HTTP 5xx: the server failed."""

    #: Seconds from the answer's ``Retry-After`` header (sent with some 503s), else ``None``.
    retry_after: float | None = None


class DeleteFailedError(ServerError):
    """The server answered an error to DELETE and the job still exists.

    On the live service the job's stored files and its worker may already be gone.
    """


class JobFailedError(ChutesError):
    """A job finished with a failure outcome; :attr:`job` is the final snapshot."""

    def __init__(self, job: Job) -> None:
        self.job = job
        status = job.status or "failed"
        detail = f": {job.error_detail}" if job.error_detail else ""
        super().__init__(f"job {job.job_id} finished with status {status!r}{detail}")


class JobTimeoutError(ChutesError, TimeoutError):
    """A wait deadline passed; the job itself keeps running and nothing was deleted."""

    def __init__(self, job_id: str, timeout: float, last: Job | None = None) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.last = last
        super().__init__(f"job {job_id} did not finish within {timeout:g} s (it keeps running)")


class UnsafePathError(ChutesError, ValueError):
    """An output filename would escape the destination folder; the file was not written."""

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"refusing output file {filename!r}: {reason}")


class OutputMissingError(ChutesError):
    """An output file is listed but was never uploaded by the worker, so it cannot be downloaded."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        super().__init__(f"output file {filename!r} was never uploaded by the job's worker")


class DownloadOutputsError(ExceptionGroup[Exception]):
    """Some output files of a job failed to download; the others landed.

    An ``ExceptionGroup`` of the per-file errors (each noted with its filename), so
    ``except* UnsafePathError`` works; :attr:`downloaded` maps the files that did land to
    their paths.
    """

    downloaded: dict[str, Any]

    def __new__(
        cls, message: str, errors: Sequence[Exception], *, downloaded: dict[str, Any]
    ) -> DownloadOutputsError:
        group = super().__new__(cls, message, errors)
        group.downloaded = downloaded
        return group

    def __init__(
        self, message: str, errors: Sequence[Exception], *, downloaded: dict[str, Any]
    ) -> None:
        super().__init__(message, errors)

    def derive(self, excs: Sequence[Exception]) -> DownloadOutputsError:  # type: ignore[override]
        return DownloadOutputsError(self.message, excs, downloaded=self.downloaded)


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def error_for_status(
    status: int,
    *,
    detail: Any,
    method: str,
    url: str,
    body_excerpt: str = "",
    attempts: int = 1,
    retry_after: float | None = None,
) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass that matches ``status``."""
    kwargs: dict[str, Any] = {
        "status": status,
        "detail": detail,
        "method": method,
        "url": url,
        "body_excerpt": body_excerpt,
        "attempts": attempts,
    }
    if status == 429:
        return RateLimitError(retry_after=retry_after, **kwargs)
    cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else APIStatusError)
    error = cls(**kwargs)
    if isinstance(error, ServerError):
        error.retry_after = retry_after
    return error


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        parts = [_validation_entry_text(e) for e in detail]
        return "; ".join(p for p in parts if p) or "validation error"
    return str(detail) if detail not in (None, "") else "(no detail)"


def _validation_entry_text(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    loc = ".".join(str(p) for p in entry.get("loc", []))
    return f"{loc}: {entry.get('msg', '')}" if loc else str(entry.get("msg", ""))


# -- submit_many and its ledger ------------------------------------------------------------------


class QuotaExceededError(ChutesError):
    """The daily job quota is exhausted: this input was not submitted."""


class UnknownCreateError(ChutesError):
    """A create's answer was lost: a job may exist (and be billed) for this input.

    It is never re-sent on its own; pass ``resubmit_unknown=True`` once you have checked.
    """


class DuplicateInputError(ConfigurationError):
    """Another input of this run with the same key is still in progress; this one was skipped."""


class LedgerError(ChutesError):
    """The ledger refused an operation: an illegal transition, a closed or incompatible file."""


class LeaseLostError(LedgerError):
    """A shared ledger refused a create: another process claimed the input meanwhile (this
    process's lease on it had expired). Nothing was sent; the other process creates it."""
