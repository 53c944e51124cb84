"""Streaming file transfer, independent of any session: ``.part`` files, Range resume, uploads.

* :mod:`.progress`: :class:`TransferProgress` snapshots and their throttling;
* :mod:`.receive`: reading a response body into a ``.part`` file (Range, batching, errors);
* :mod:`.partfile`: writing the ``.part`` behind in a thread, then :func:`finalize`;
* :mod:`.upload`: the multipart upload body streamed from disk;
* :mod:`.paths`: where a server-supplied filename may be written.

``downloads.py`` and ``worker.py`` wire these to the transport and a retry policy. The
measurements behind the buffer sizes: ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

from .partfile import (
    PART_SUFFIX,
    check_complete,
    finalize,
    part_path_for,
    range_header_for,
    requested_offset,
)
from .paths import safe_destination
from .progress import ProgressCallback, TransferProgress
from .receive import expected_total, resume_offset, stream_to_part
from .upload import FilePayload, multipart_upload_body

__all__ = [
    "PART_SUFFIX",
    "FilePayload",
    "ProgressCallback",
    "TransferProgress",
    "check_complete",
    "expected_total",
    "finalize",
    "multipart_upload_body",
    "part_path_for",
    "range_header_for",
    "requested_offset",
    "resume_offset",
    "safe_destination",
    "stream_to_part",
]
