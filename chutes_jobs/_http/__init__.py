"""The transport: one request pipeline (sign, send, map errors, decode answers) and its lanes.

* :mod:`.pipeline`: :class:`Transport`, the one path every call takes, and the one place the
  lane of a call is chosen;
* :mod:`.aiohttp_lane`: one attempt over aiohttp, aiohttp's failures mapped to ours;
* :mod:`.http1`: the lean HTTP/1.1 keep-alive pool that carries a bulk run's JSON calls;
* :mod:`.answers`: what both lanes share: the answer-size limit, error statuses, JSON.
"""

from __future__ import annotations

from .aiohttp_lane import map_transport_errors, read_answer
from .answers import MAX_ANSWER_BYTES, as_job, job_from_answer, json_answer
from .pipeline import NO_BODY, Transport, bulk_traffic

__all__ = [
    "MAX_ANSWER_BYTES",
    "NO_BODY",
    "Transport",
    "as_job",
    "bulk_traffic",
    "job_from_answer",
    "json_answer",
    "map_transport_errors",
    "read_answer",
]
