"""The library's log lines, written by a hook: on by default, removable like any other."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from .._redact import redact_url
from .events import Event, RequestAnswered, RequestSent, RetryScheduled, TransferEnded

__all__ = ["LOGGER_NAME", "LoggingHook"]

LOGGER_NAME: Final = "chutes_jobs"

#: The level each event is logged at; the hook takes no other event.
_LEVELS: Final[Mapping[type[Event], int]] = {
    RequestSent: logging.DEBUG,
    RequestAnswered: logging.DEBUG,
    RetryScheduled: logging.WARNING,
    TransferEnded: logging.INFO,
}


class LoggingHook:
    """Logs requests (DEBUG), retries (WARNING) and finished transfers (INFO) to ``logger``
    (default ``logging.getLogger("chutes_jobs")``), URLs with their ``token=`` masked.

    While the logger is not enabled for an event's level, the library does not even build that
    event for this hook: a quiet logger costs one level check per request.
    """

    #: The events this hook takes (see :func:`~chutes_jobs.instrumentation.add_hook`).
    event_types: Final = frozenset(_LEVELS)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)

    def __repr__(self) -> str:
        return f"LoggingHook(logger={self.logger.name!r})"

    @staticmethod
    def level_of(event_type: type[Event]) -> int:
        """The level events of ``event_type`` are logged at."""
        return _LEVELS[event_type]

    def __call__(self, event: Event) -> None:
        level = _LEVELS.get(type(event))
        if level is None or not self.logger.isEnabledFor(level):
            return
        log = self.logger.log
        if isinstance(event, RequestSent):
            if event.call_kind != "transfer":  # an upload logs its own attempts
                url = redact_url(event.url.without_query_params("token"))
                log(level, "attempt %d: %s %s", event.attempt, event.method, url)
        elif isinstance(event, RequestAnswered):
            if event.status is not None:
                sent = event.request
                log(level, "%s %s -> HTTP %d", sent.method, redact_url(sent.url), event.status)
        elif isinstance(event, RetryScheduled):
            log(
                level,  # "of max_attempts": counted since the last progress
                "retrying %s call (attempt %d of %d failed: %s) in %.2f s",
                event.call_kind,
                event.attempt,
                event.max_attempts,
                event.reason,
                event.delay,
            )
        elif isinstance(event, TransferEnded) and event.error_type is None:
            if event.direction == "download":
                log(level, "downloaded %s to %s", event.file, event.path)
            else:
                log(level, "uploaded %s (%d bytes)", event.file, event.size or 0)
