"""The events hooks receive: what happened, typed, and never holding a secret.

Each event is a frozen attrs class. URLs carry no credential: a worker's ``token=`` value is
replaced by ``***`` before an event is built, and API keys and signatures travel in headers,
which no event holds. Durations are in seconds (``time.perf_counter``), sizes in bytes.

The classes keep their fields in a ``__dict__`` (``slots=False``): a slotted frozen class sets
each field through ``object.__setattr__``, a dict-backed one stores it straight into its
``__dict__``, a quarter cheaper (``RequestSent``: 0.47 against 0.63 us).
"""

from __future__ import annotations

from typing import Final, TypeAlias

import attrs
import yarl

from ..models import JobState

__all__ = [
    "EVENT_TYPES",
    "BulkCounters",
    "Event",
    "JobStateChanged",
    "OperationEnded",
    "OperationStarted",
    "RequestAnswered",
    "RequestSent",
    "RetryScheduled",
    "TransferEnded",
    "TransferProgressed",
]


@attrs.frozen(slots=False)
class RequestSent:
    """One HTTP attempt is about to be sent.

    ``route`` is the API's route template (``/jobs/{job_id}``, ``/jobs/{chute_id}/{method}``,
    ``/jobs/{job_id}/upload``, ``/jobs/{job_id}/download/{file_id}``, after any path prefix of
    ``base_url``), or None for a URL that is none of them. ``url`` is the URL as sent, its
    ``token=`` value masked. ``attempt`` counts from 1 within the call's retry loop;
    ``call_kind`` is the :class:`~chutes_jobs.CallKind` value (``"read"``, ``"create"``, ...).
    """

    method: str
    route: str | None
    url: yarl.URL
    attempt: int
    call_kind: str


@attrs.frozen(slots=False)
class RequestAnswered:
    """The attempt of ``request`` is over: its answer was read, or it failed.

    ``status`` is the HTTP status received (None when no answer came: a failed connection, a
    timeout, a cancellation); ``duration`` covers sending and reading the whole answer (for a
    transfer, its body); ``error_type`` is the qualified class name of the exception that ended
    the attempt (``"chutes_jobs.errors.RateLimitError"``), None on success.
    """

    request: RequestSent
    status: int | None
    duration: float
    error_type: str | None


@attrs.frozen(slots=False)
class RetryScheduled:
    """A failed attempt will be retried after ``delay`` seconds.

    ``attempt`` is the failed attempt's number since the budget last started (a download that
    made progress starts it afresh), of ``max_attempts``. ``reason`` is the error's message
    (secrets masked, as in every error of the library), ``error_type`` its qualified class name,
    ``status`` its HTTP status if it had one.
    """

    call_kind: str
    attempt: int
    max_attempts: int
    delay: float
    reason: str
    error_type: str
    status: int | None


@attrs.frozen(slots=False)
class JobStateChanged:
    """A job handle saw its job in a new state (``from_state`` None: its first snapshot)."""

    job_id: str
    from_state: JobState | None
    to_state: JobState


@attrs.frozen(slots=False)
class TransferProgressed:
    """A transfer got further: ``done`` of ``total`` bytes of ``file`` (at most one per MiB).

    ``direction`` is ``"download"`` or ``"upload"``.
    """

    direction: str
    job_id: str | None
    file: str
    done: int
    total: int | None


@attrs.frozen(slots=False)
class TransferEnded:
    """A file transfer is over, all its attempts included.

    ``path`` is the local file (a download's destination, an upload's source). ``bytes`` is
    what this call moved and kept: for a download, how much the file on disk grew (bytes an
    attempt received and then discarded, after a server answered 200 to a Range request, are
    not counted); for an upload, the file's size once stored (0 when it failed). ``size`` is
    the file's size when known. ``resumed_from`` is where the download's last attempt started in
    the file: 0 when it fetched the file from its start, N when it resumed after N bytes
    (always 0 for an upload). ``error_type`` is None on success.
    """

    direction: str
    job_id: str | None
    file: str
    path: str
    bytes: int
    size: int | None
    duration: float
    resumed_from: int
    error_type: str | None


@attrs.frozen(slots=False)
class OperationStarted:
    """A user-level operation began: ``"wait"``, ``"download"`` (one file),
    ``"download_outputs"``, ``"upload"`` (one file), ``"upload_outputs"`` or
    ``"submit_many"``. ``job_id`` and ``file`` are set where the operation has them."""

    name: str
    job_id: str | None
    file: str | None


@attrs.frozen(slots=False)
class OperationEnded:
    """The ``operation`` is over.

    ``outcome``: for ``wait``, ``"finished"`` or ``"failed"`` (the job's outcome),
    ``"timeout"``; for ``upload_outputs``, ``"ok"`` or ``"failed"`` (some file did not
    upload); for the others ``"ok"``; for every operation ``"error"`` when an exception ended
    it and ``"cancelled"`` when it was cancelled. ``error_type`` is that exception's qualified
    class name (None when the operation returned).
    """

    operation: OperationStarted
    outcome: str
    duration: float
    error_type: str | None


@attrs.frozen(slots=False)
class BulkCounters:
    """A ``submit_many`` run's totals so far: results per :class:`~chutes_jobs.BulkOutcome`.

    Emitted at most every 0.25 s while results come in, when the run's work ends, and once
    with ``final`` true when the run is over (after a stop, the creates it let finish
    included). ``run`` tells runs apart (a number unique in this process); ``taken`` is how
    many inputs were read.
    """

    run: int
    taken: int
    submitted: int
    finished: int
    failed: int
    downloaded: int
    not_submitted: int
    unknown: int
    final: bool


Event: TypeAlias = (
    RequestSent
    | RequestAnswered
    | RetryScheduled
    | JobStateChanged
    | TransferProgressed
    | TransferEnded
    | OperationStarted
    | OperationEnded
    | BulkCounters
)

#: Every event type, in the order above.
EVENT_TYPES: Final[tuple[type[Event], ...]] = (
    RequestSent,
    RequestAnswered,
    RetryScheduled,
    JobStateChanged,
    TransferProgressed,
    TransferEnded,
    OperationStarted,
    OperationEnded,
    BulkCounters,
)
