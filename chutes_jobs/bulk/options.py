"""The settings of one ``submit_many`` run: checked, with their defaults filled in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigurationError
from ..models import Job
from ..polling import PollPolicy
from ..transfer import ProgressCallback

#: Inputs taken and not yet handed to the consumer, when waiting for results.
DEFAULT_MAX_IN_FLIGHT_WAITING = 4096
#: Without waiting, inputs taken ahead per submitter (keeps submitters busy, reads lazily).
READ_AHEAD_PER_SUBMITTER = 4
#: Default seconds creates under way get to finish once the run is stopped.
DEFAULT_CANCEL_GRACE = 30.0


def input_key(args: Mapping[str, Any]) -> str:
    """The default key of an input: sha256 of its canonical JSON (sorted keys, compact)."""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.define
class BulkOptions:
    """The settings of one ``submit_many`` run."""

    chute_id: str
    method: str
    concurrency: int
    wait: bool
    download_to: Path | None
    key: Callable[[Mapping[str, Any]], str]
    disk_gb: float | None
    poll: PollPolicy
    poll_concurrency: int
    download_concurrency: int
    wait_timeout: float | None
    resubmit_unknown: bool
    max_in_flight: int
    cancel_grace: float
    progress: ProgressCallback | None = None
    on_job: Callable[[Job], None] | None = None

    @property
    def waits(self) -> bool:
        """Whether each job is followed to its end (``wait`` or ``download_to``)."""
        return self.wait or self.download_to is not None


def bulk_options(
    chute_id: str,
    method: str,
    *,
    concurrency: int,
    wait: bool,
    download_to: str | PathLike[str] | None,
    key: Callable[[Mapping[str, Any]], str] | None,
    disk_gb: float | None,
    poll: PollPolicy | None,
    poll_concurrency: int | None,
    download_concurrency: int,
    wait_timeout: float | None,
    resubmit_unknown: bool,
    max_in_flight: int | None,
    cancel_grace: float,
    progress: ProgressCallback | None = None,
    on_job: Callable[[Job], None] | None = None,
) -> BulkOptions:
    """Check the settings and fill in the defaults."""
    waits = wait or download_to is not None
    if max_in_flight is None:
        ahead = concurrency * READ_AHEAD_PER_SUBMITTER
        max_in_flight = max(DEFAULT_MAX_IN_FLIGHT_WAITING, ahead) if waits else ahead
    poll_concurrency = poll_concurrency or concurrency
    for name, value in (
        ("concurrency", concurrency),
        ("poll_concurrency", poll_concurrency),
        ("download_concurrency", download_concurrency),
        ("max_in_flight", max_in_flight),
    ):
        if value < 1:
            raise ConfigurationError(f"{name} must be at least 1, got {value}")
    return BulkOptions(
        chute_id=chute_id,
        method=method,
        concurrency=concurrency,
        wait=wait,
        download_to=Path(download_to) if download_to is not None else None,
        key=key or input_key,
        disk_gb=disk_gb,
        poll=poll or PollPolicy(),
        poll_concurrency=poll_concurrency,
        download_concurrency=download_concurrency,
        wait_timeout=wait_timeout,
        resubmit_unknown=resubmit_unknown,
        max_in_flight=max_in_flight,
        cancel_grace=cancel_grace,
        progress=progress,
        on_job=on_job,
    )
