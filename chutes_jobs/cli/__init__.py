"""The ``chutes-jobs`` command: run and manage Chutes jobs, or a local emulator of the API.

Commands::

    demo       a whole job lifecycle on the embedded emulator (no credentials)
    emulator   serve the local emulator until Ctrl-C
    submit     create a job                      status    show a job
    wait       wait until a job is finished      download  download a job's outputs
    delete     delete a job                      run       submit + wait + download
    bulk       submit many jobs from a JSON Lines file, resumable with a ledger
    ledger     status | ls | cancel: a bulk ledger (file or postgresql:// URL) as a job book

Job commands talk to ``--base-url`` (or ``$CHUTES_BASE_URL``, default the live API) with
``--api-key`` (or ``$CHUTES_API_KEY``).

Output: results go to stdout; progress and logs go to stderr, as bars only when stderr is a
terminal and as plain lines otherwise. ``--json`` makes stdout machine-readable: one JSON
document, or for ``bulk`` one JSON object per line (each result, then a summary).

Exit codes:

* 0 success
* 1 a job failed: its outcome is FAILED (``status``, ``wait``, ``download``, ``run``,
  ``bulk``; ``demo``: verification failed). A finished job whose outcome is UNKNOWN exits 0
  with a one-line notice on stderr, and ``"outcome": "unknown"`` in ``--json``
* 2 usage error: bad option or argument, bad ``--arg`` or JSON, disk size out of range
* 3 API, transport or file error: unknown job, server unreachable, a download failed,
  a ``bulk`` input not submitted or whose create is unknown
* 4 ``--timeout`` passed while waiting (the job keeps running)
* 130 interrupted by Ctrl-C: partial downloads stay as ``.part`` files and resume when the
  same download runs again; a bulk ledger stays consistent (``emulator``: stopped; SIGTERM
  stops it with 0)

Errors print one line on stderr, never a secret.

Layout: ``_app`` (the group and ``main``), ``_exit`` (exit codes, error lines),
``_output`` (stdout/stderr printing), ``_options`` (shared options, sessions), and one
module per family of commands: ``jobs``, ``bulk``, ``ledger``, ``local`` (demo, emulator).
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

try:
    import click  # noqa: F401  (checked here, before any command module needs it)

    if find_spec("rich") is None:  # imported only when a terminal shows progress
        raise ImportError("rich")
except ImportError:  # the cli extra is missing: a usage error (2), not "job failed" (1)
    sys.stderr.write(
        "error: the chutes-jobs command needs the cli extra (click, rich): "
        "pip install 'chutes-jobs[cli]'\n"
    )
    sys.exit(2)

# Importing the command modules registers their commands on the group.
from . import bulk, jobs, ledger, local  # noqa: F401
from ._app import main

__all__ = ["main"]
