"""The exception hierarchy of chutes-jobs.

Every error derives from :class:`ChutesError`, grouped by where things fail: configuration,
transport, protocol, status (the API said no), job outcomes, transfers, bulk and the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._redact import redact

if TYPE_CHECKING:
    from .models import Job

__all__ = [
    "APIStatusError",
    "AnswerTooLargeError",
    "AuthenticationError",
    "BadRequestError",
    "BlockingCallError",
    "ChutesError",
    "ConfigurationError",
    "ConflictError",
    "DeleteFailedError",
    "DownloadInProgressError",
    "DownloadOutputsError",
    "DuplicateInputError",
    "IncompleteTransferError",
    "InsufficientSpaceError",
    "JobFailedError",
    "JobTimeoutError",
    "JobUnreadableError",
    "LeaseLostError",
    "LedgerError",
    "NotFoundError",
    "OutputMissingError",
    "OutputNameError",
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
    "unreadable_job_error",
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


class OutputNameError(ConfigurationError):
    """A worker's output names that must not be reported; nothing was sent.

    :attr:`problems` maps each refused name to why: unsafe as a relative path (absolute,
    ``..``, backslash, ...), or a name the live server stores but can never serve back (not
    latin-1, or holding a newline or another control character, which the download's
    ``Content-Disposition`` header cannot carry: the download answers 500 forever).
    """

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        listed = "; ".join(f"{name!r}: {why}" for name, why in self.problems.items())
        count = len(self.problems)
        super().__init__(
            f"{count} output name{'s' if count != 1 else ''} refused, nothing was sent: {listed}"
        )


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
    """A body ended before it was proven complete: fewer bytes than its Content-Length or
    Content-Range announced, a cut chunked body, or no length and no framing to tell its end
    from a dropped connection. No file was written under the final name."""


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
        self.detail = _redacted_detail(detail)
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


class JobUnreadableError(ServerError):
    """Every read of a job answered a bare HTTP 500 until the retry policy was spent.

    On the live server this is how a job breaks when its worker finished it with a ``result``
    that is not a JSON object (the official ``chutes`` worker library does so on every
    failure): the job is stored, and no read of it can ever succeed.
    """


def unreadable_job_error(error: ServerError, job_id: str) -> ServerError:
    """``error`` as a :class:`JobUnreadableError` naming the likely cause, when it is a bare
    500 (``Internal Server Error`` as plain text) answered to reading job ``job_id``."""
    if error.status != 500 or error.body_excerpt.strip() != "Internal Server Error":
        return error
    tries = f"{error.attempts} attempt{'s' if error.attempts != 1 else ''}"
    unreadable = JobUnreadableError(
        status=error.status,
        detail=(
            f"Internal Server Error ({tries}); a job whose every read answers a bare 500 is "
            "likely one whose worker finished it with a result that is not a JSON object (the "
            f"official chutes worker library does so on every failure): job {job_id} can then "
            "never be read again"
        ),
        method=error.method,
        url=error.url,
        body_excerpt=error.body_excerpt,
        attempts=error.attempts,
    )
    unreadable.retry_after = error.retry_after
    return unreadable


class BlockingCallError(ChutesError, RuntimeError):
    """A blocking call of :mod:`chutes_jobs.sync` was made on its session's own event loop
    thread (from a callback or a job function), where waiting would deadlock; nothing was sent.
    """


class JobFailedError(ChutesError):
    """A job finished with the outcome ``FAILED``; :attr:`job` is the final snapshot.

    :attr:`status` is the status the outcome was read from (None when only a missing output
    told), :attr:`detail` why it failed when known (``Job.outcome_detail``).
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = job.outcome_status
        self.detail = job.outcome_detail
        head = f"finished with status {self.status!r}" if self.status else "failed"
        tail = f": {self.detail}" if self.detail else ""
        super().__init__(f"job {job.job_id} {head}{tail}")


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


class DownloadInProgressError(ChutesError):
    """Another download (a task of this process or another process) holds the partial file of
    this destination; this one stopped before writing anything."""

    def __init__(self, path: str, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"{path} is being downloaded by {holder}; wait for it to finish")


class InsufficientSpaceError(ChutesError):
    """An output file does not fit on the destination's filesystem.

    Raised before writing when the announced size cannot fit, or when the disk fills up
    meanwhile; the partial file is deleted, so its space goes to the other files.
    :attr:`needed` and :attr:`free` are in bytes.
    """

    def __init__(self, filename: str, folder: str, needed: int, free: int) -> None:
        self.filename = filename
        self.folder = folder
        self.needed = needed
        self.free = free
        super().__init__(
            f"no space for output file {filename!r} in {folder}: it needs {needed} bytes "
            f"({_mib(needed)}), {free} bytes ({_mib(free)}) are free"
        )


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1024 * 1024):.1f} MiB"


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


def _redacted_detail(detail: Any) -> Any:
    """``detail`` (text, or FastAPI's list of dicts) with every string in it redacted: a
    server may echo the credential it refused."""
    if isinstance(detail, str):
        return redact(detail)
    if isinstance(detail, list):
        return [_redacted_detail(item) for item in detail]
    if isinstance(detail, dict):
        return {key: _redacted_detail(value) for key, value in detail.items()}
    return detail


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
