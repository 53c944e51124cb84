"""Streaming file transfer, independent of any session: partial files, Range, uploads.

* :mod:`.progress`: :class:`TransferProgress` snapshots and their throttling;
* :mod:`.receive`: what a download answer's body is (:func:`plan_body`), reading it into the
  partial file, and the proof that it is complete (:func:`check_complete`);
* :mod:`.partial`: the partial file of one download: owned, bound to its server file by its
  record (:mod:`.record`), space reserved (:mod:`.space`), published when proven;
* :mod:`.partfile`: writing the partial behind in a thread;
* :mod:`.files`: opening files below a destination without following links;
* :mod:`.threads`: thread work that a cancellation neither leaks nor cuts short;
* :mod:`.upload`: the multipart upload body streamed from disk;
* :mod:`.paths`: where a server-supplied filename may be written.

``downloads.py`` and ``worker.py`` wire these to the transport and a retry policy. The
measurements behind the buffer sizes: ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

from .partial import Partial, is_out_of_space
from .paths import safe_destination
from .progress import ProgressCallback, TransferProgress
from .receive import (
    BodyPlan,
    check_complete,
    expected_total,
    plan_body,
    resume_offset,
    stream_to_part,
)
from .record import PART_SUFFIX, RECORD_SUFFIX, PartIdentity, part_names
from .threads import acquire_in_thread
from .upload import FilePayload, multipart_upload_body

__all__ = [
    "PART_SUFFIX",
    "RECORD_SUFFIX",
    "BodyPlan",
    "FilePayload",
    "PartIdentity",
    "Partial",
    "ProgressCallback",
    "TransferProgress",
    "acquire_in_thread",
    "check_complete",
    "expected_total",
    "is_out_of_space",
    "multipart_upload_body",
    "part_names",
    "plan_body",
    "resume_offset",
    "safe_destination",
    "stream_to_part",
]
