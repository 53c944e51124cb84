"""``bulk``: one job per line of a JSON Lines file, with live counters and a summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._progress import BulkDisplay
from ..errors import DownloadOutputsError, JobFailedError, NotFoundError
from ..models import JobOutcome
from ..session import ChutesSession
from ._app import command
from ._exit import (
    EXIT_API_ERROR,
    EXIT_JOB_FAILED,
    EXIT_OK,
    INTERRUPT_GRACE,
    describe_create_not_found,
    describe_download_failure,
    describe_job_failure,
    one_line,
    run_async,
)
from ._options import (
    check_credentials,
    connection_options,
    disk_gb_option,
    json_option,
    out_dir_type,
    read_text,
    session_settings,
)
from ._output import emit_line, paths_json, say
from .ledger import ledger_target

if TYPE_CHECKING:
    from ..bulk import BulkResult

# chutes_jobs.bulk (the ledger: sqlite3, threads) is imported only when `bulk` runs, so the
# other commands start faster: `from .. import BulkOutcome` below.


class Inputs:
    """The job arguments of a JSON Lines file, and the line each came from.

    Read whole before anything is submitted, so a typo on line 5000 submits nothing. Results
    and errors name inputs by their line in the file, counted from 1 as editors do (blank lines
    are skipped but counted).
    """

    def __init__(self, text: str) -> None:
        self.args: list[dict[str, Any]] = []
        self.lines: list[int] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                self.args.append(parse_input_line(number, line))
                self.lines.append(number)

    def line_of(self, result: BulkResult) -> int:
        """The line of the input ``result`` is about."""
        return self.lines[result.index]


def parse_input_line(number: int, line: str) -> dict[str, Any]:
    """One line's JSON object; a usage error naming the line otherwise."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"line {number}: not JSON: {exc}", param_hint="--inputs") from None
    if not isinstance(value, dict):
        raise click.BadParameter(
            f"line {number}: expected a JSON object of job arguments", param_hint="--inputs"
        )
    return value


class ResultPrinter:
    """Each bulk result as a line for a person, or a JSON object (``--json``)."""

    def __init__(self, inputs: Inputs, chute: str, method: str, as_json: bool) -> None:
        self.inputs = inputs
        self.chute = chute
        self.method = method
        self.as_json = as_json

    def print(self, result: BulkResult) -> None:
        emit_line(self.json(result), self.as_json, self.text(result))

    def json(self, result: BulkResult) -> dict[str, Any]:
        """One bulk result as a JSON object."""
        job = result.job
        return {
            "line": self.inputs.line_of(result),
            "key": result.key,
            "outcome": result.outcome.value,
            "job_id": result.job_id,
            "status": job.status if job is not None else None,
            "job_outcome": job.outcome.value if job is not None and job.outcome else None,
            "resumed": result.resumed,
            "paths": paths_json(dict(result.paths)) if result.paths is not None else None,
            "error": self.error_text(result) if result.error is not None else None,
        }

    def text(self, result: BulkResult) -> str:
        """One line about a bulk result for a person."""
        job = f" job {result.job_id}" if result.job_id is not None else ""
        resumed = " (resumed)" if result.resumed else ""
        error = f": {self.error_text(result)}" if result.error is not None else ""
        unknown = result.job is not None and result.job.outcome is JobOutcome.UNKNOWN
        notice = " (outcome unknown: nothing says how it ended)" if unknown else ""
        line = self.inputs.line_of(result)
        return f"line {line}: {result.outcome.value}{job}{resumed}{notice}{error}"

    def error_text(self, result: BulkResult) -> str:
        """One line about a bulk item's error."""
        error = result.error
        if isinstance(error, JobFailedError):
            return describe_job_failure(error.job)
        if isinstance(error, DownloadOutputsError):
            return one_line(describe_download_failure(error))
        if isinstance(error, NotFoundError) and result.job_id is None:
            return describe_create_not_found(self.chute, self.method, error)
        return one_line(str(error) or type(error).__name__)


class BulkTally:
    """Counts of a bulk run's results, and its exit code."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.errors = 0
        self.failed = 0
        self.resumed = 0
        self.jobs = 0
        #: A shared batch's totals per ledger state, every process's (None: not shared).
        self.batch: dict[str, int] | None = None

    def add(self, result: BulkResult) -> None:
        """Count one result."""
        self.outcomes[result.outcome.value] += 1
        self.errors += not result.ok
        from .. import BulkOutcome

        self.failed += result.outcome is BulkOutcome.FAILED
        self.resumed += result.resumed
        self.jobs += result.job_id is not None

    @property
    def exit_code(self) -> int:
        """3 if an input was not submitted, is unknown, or had an error other than its job
        failing (a wait or a download); else 1 if a job failed; else 0."""
        from .. import BulkOutcome

        unsent = self.outcomes[BulkOutcome.NOT_SUBMITTED.value]
        if unsent or self.outcomes[BulkOutcome.UNKNOWN.value] or self.errors > self.failed:
            return EXIT_API_ERROR
        return EXIT_JOB_FAILED if self.failed else EXIT_OK

    def summary(self) -> dict[str, Any]:
        """The summary object (``--json``'s last line).

        ``jobs``: inputs that have a job, ``created`` of them in this run, ``resumed`` from the
        ledger; ``outcomes``: how many inputs ended in each :class:`BulkOutcome`. The counts are
        this process's; with a shared (``postgresql://``) ledger, ``batch`` has the batch's
        totals at the end, every process's, per ledger state (every state, zeros included).
        """
        from .. import BulkOutcome

        counts = {outcome.value: self.outcomes[outcome.value] for outcome in BulkOutcome}
        summary = {
            "inputs": sum(self.outcomes.values()),
            "jobs": self.jobs,
            "created": self.jobs - self.resumed,
            "resumed": self.resumed,
            "outcomes": counts,
            "errors": self.errors,
        }
        if self.batch is not None:
            summary["batch"] = self.batch
        return {"summary": summary, "exit_code": self.exit_code}

    def text(self) -> str:
        """The summary line for a person."""
        counts = ", ".join(f"{n} {name}" for name, n in sorted(self.outcomes.items()) if n)
        total = sum(self.outcomes.values())
        jobs = f"{self.jobs} jobs ({self.jobs - self.resumed} created, {self.resumed} resumed)"
        line = f"{total} inputs: {counts or 'nothing to do'}; {jobs}; {self.errors} with errors"
        if self.batch is None:
            return line
        batch = " · ".join(f"{state} {n}" for state, n in self.batch.items() if n)
        return f"{line}\nbatch totals (every process): {batch or 'empty'}"


async def run_bulk(
    conn: dict[str, Any], settings: dict[str, Any], printer: ResultPrinter
) -> BulkTally:
    """Run ``submit_many``, printing each result as it comes and counting them (with a shared
    ledger, the batch's totals too)."""
    tally = BulkTally()
    with BulkDisplay() as display:
        shared = isinstance(settings["ledger"], str)  # a postgresql:// URL
        over = asyncio.Event()
        totals = (
            asyncio.create_task(batch_totals(settings["ledger"], display, over)) if shared else None
        )
        try:
            async with ChutesSession.from_env(**session_settings(**conn)) as session:
                check_credentials(session.auth_kind, creates_only=not settings["wait"])
                async for result in session.submit_many(
                    inputs=printer.inputs.args,
                    progress=display.transfer,
                    on_job=lambda job: display.job_seen(job.job_id, job.state),
                    **settings,
                ):
                    tally.add(result)
                    display.result_done(result.job_id, ok=result.ok)
                    printer.print(result)
        except BaseException:
            if totals is not None:
                totals.cancel()
                await asyncio.gather(totals, return_exceptions=True)
            raise
        if totals is not None:
            over.set()
            (batch,) = await asyncio.gather(totals, return_exceptions=True)
            if isinstance(batch, BaseException):
                say(f"warning: the batch's totals could not be read: {one_line(str(batch))}")
            else:
                tally.batch = batch
    return tally


async def batch_totals(url: str, display: BulkDisplay, over: asyncio.Event) -> dict[str, int]:
    """A shared batch's totals (every process's) on the live display every 2 seconds until
    ``over`` is set; then the totals at that moment, per ledger state (zeros included)."""
    from ..bulk.ledger import Ledger  # the ledger loads only when a bulk run starts

    async with await Ledger.open(url) as book:
        while not over.is_set():
            if display.is_live:
                counts = await book.counts()
                display.show_batch({str(s): n for s, n in counts.items() if n})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(over.wait(), 2.0)
        final = {str(state): n for state, n in (await book.counts()).items()}
        if display.is_live:  # the last frame drawn shows the batch as this process ends
            display.show_batch({state: n for state, n in final.items() if n})
            display.refresh()
        return final


@command()
@click.argument("chute")
@click.argument("method")
@click.option(
    "--inputs",
    "inputs_source",
    required=True,
    metavar="FILE.jsonl|-",
    help="One JSON object of job arguments per line.",
)
@click.option("--out", type=out_dir_type, default=None, help="Download outputs to DIR/<job_id>/.")
@click.option(
    "--ledger",
    callback=ledger_target,
    default=None,
    metavar="FILE|URL",
    help="A SQLite file (a re-run skips what was done and never creates a job twice), or a "
    "postgresql:// URL many processes share the batch through.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=8,
    show_default=True,
    help="Creates under way at once.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for each job to finish (--out implies --wait).",
)
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Per-job wait limit.")
@click.option(
    "--resubmit-unknown",
    is_flag=True,
    help="Re-send inputs whose earlier create got no answer (a job may exist for them).",
)
@disk_gb_option()
@connection_options
@json_option
def bulk(
    chute: str,
    method: str,
    inputs_source: str,
    out: Path | None,
    ledger: str | Path | None,
    concurrency: int,
    wait: bool,
    timeout: float | None,
    resubmit_unknown: bool,
    disk_gb: int | None,
    as_json: bool,
    **conn: Any,
) -> None:
    """Submit one job of CHUTE's METHOD per line of --inputs, with bounded concurrency.

    With --out, outputs go to DIR/<job_id>/. With --ledger, every step is recorded, so a
    re-run (after a crash or Ctrl-C) skips finished inputs and never re-creates a job.
    Prints a line per result and a summary (--json: a JSON object per result, then
    {"summary": ...}). Results and errors name inputs by their line in --inputs, counted
    from 1 (blank lines are skipped but counted). On a terminal, live counters show on
    stderr. With a postgresql:// --ledger, start the same command on many machines: they
    share the batch, and the summary adds the batch's totals (every process's). Exit 1 if a
    job failed, 3 if an input was not submitted, its create's outcome is unknown, or a
    wait/download failed.
    """
    if out is not None and not wait:
        raise click.UsageError("--out downloads outputs, which needs --wait")
    printer = ResultPrinter(Inputs(read_text(inputs_source, "--inputs")), chute, method, as_json)
    settings: dict[str, Any] = {
        "chute_id": chute,
        "method": method,
        "concurrency": concurrency,
        "wait": wait,
        "download_to": out,
        "ledger": ledger,
        "disk_gb": disk_gb,
        "wait_timeout": timeout,
        "resubmit_unknown": resubmit_unknown,
        # Ctrl-C: creates under way get half the grace to be answered and recorded
        "cancel_grace": INTERRUPT_GRACE / 2,
    }
    tally = run_async(
        run_bulk(conn, settings, printer),
        interrupted="interrupted; the ledger records every step: run the same command again "
        "to resume",
    )
    emit_line(tally.summary(), as_json, tally.text())
    sys.exit(tally.exit_code)
