"""The ``chutes-jobs`` click group, the console script around it, and library logging."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from .._redact import RedactingFilter
from .._version import __version__
from ._exit import EXIT_OK, interrupted_exit

EPILOG = """\b
Exit codes: 0 ok, 1 job failed, 2 usage error, 3 API/transport/file error,
4 wait timed out, 130 interrupted (Ctrl-C; .part files are kept and resume).
\b
Environment: CHUTES_API_KEY, CHUTES_BASE_URL.
"""

log = logging.getLogger("chutes_jobs")


#: Loggers shown the same way as the library's own: psycopg's pool logs its reconnections to
#: a shared ledger's database (multi-line, at WARNING, without a handler of its own).
_SHOWN_LOGGERS = ("chutes_jobs", "psycopg")


def setup_logging(verbose: int) -> None:
    """Library logs on stderr: errors only by default (the command reports its own error in
    one line), ``-v`` also warnings and info such as retries, ``-vv`` debug."""
    level = (logging.ERROR, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("chutes-jobs: %(message)s"))
    handler.addFilter(RedactingFilter())  # psycopg's records too
    for name in _SHOWN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(version=__version__, prog_name="chutes-jobs")
@click.option("-v", "--verbose", count=True, help="More logs on stderr (-vv: debug).")
def cli(verbose: int) -> None:
    """chutes-jobs: run and manage Chutes jobs, or a local emulator of the Jobs API."""
    setup_logging(verbose)


def command(**settings: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``@cli.command`` with the exit codes in its ``--help``."""
    return cli.command(epilog=EPILOG, **settings)


def main(argv: list[str] | None = None) -> None:
    """The console script: run the command line, with Ctrl-C and usage errors mapped."""
    try:
        code = cli.main(args=argv, prog_name="chutes-jobs", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):  # Ctrl-C outside a running command
        interrupted_exit()
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
