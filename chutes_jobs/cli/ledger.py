"""``ledger status|ls|cancel LEDGER``: a bulk run's ledger as the batch's job book.

LEDGER is a SQLite file (``--ledger run.db`` of ``bulk``) or a ``postgresql://`` URL (a ledger
many processes share). The API has no list endpoint: the ledger is the only record of which
jobs a batch created.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from ..bulk.ledger_states import LedgerState
from ._app import EPILOG, cli
from ._exit import EXIT_API_ERROR, EXIT_OK, one_line, run_async
from ._options import connection_options, json_option, with_session
from ._output import emit, emit_line

if TYPE_CHECKING:
    from ..bulk.cancel import CancelReport
    from ..bulk.ledger import LedgerEntry, LedgerSummary

# The ledger (and its backends) loads only when a command reads one: `chutes-jobs --help` and
# the one-job commands start without it.

__all__ = ["ledger_target"]


def ledger_target(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A click callback: a ``postgresql://`` URL as given, else a file path (not a folder)."""
    from ..bulk.ledger.targets import is_shared_url, refused_target

    if value is None or is_shared_url(value):
        return value
    if (refused := refused_target(value)) is not None:  # never made a path: that hides the
        raise click.BadParameter(refused, ctx, param)  # password from its mask
    if Path(value).is_dir():
        raise click.BadParameter(f"{value} is a folder, not a ledger file", ctx, param)
    return Path(value)


@cli.group(epilog=EPILOG)
def ledger() -> None:
    """Read or act on a bulk ledger: a SQLite file or a postgresql:// URL."""


def _existing(target: str | Path) -> str | Path:
    """``target``, refused when it is a SQLite file that does not exist (opening it would
    create one)."""
    if isinstance(target, Path) and not target.exists():
        raise click.BadParameter(f"{target} does not exist", param_hint="LEDGER")
    return target


# ----------------------------------------------------------------------------- status


def summary_json(summary: LedgerSummary) -> dict[str, Any]:
    """A ledger summary as a JSON object."""
    lease, batch = summary.oldest_lease, summary.batch
    return {
        "ledger": summary.location,
        "batch": None if batch is None else {"chute": batch[0], "method": batch[1]},
        "total": summary.total,
        "counts": {str(state): n for state, n in summary.counts.items()},
        "processes": {
            owner: {
                "holds": summary.held.get(owner, 0),
                "counts": {str(state): n for state, n in counts.items() if n},
            }
            for owner, counts in sorted(summary.by_owner.items())
        },
        "oldest_lease": None if lease is None else attrs.asdict(lease),
        "pause": None if summary.pause is None else attrs.asdict(summary.pause),
    }


def summary_text(summary: LedgerSummary) -> str:
    """The summary for a person, a few lines."""
    batch = "" if summary.batch is None else f" (chute {summary.batch[0]}, {summary.batch[1]})"
    counts = " · ".join(f"{state} {n}" for state, n in summary.counts.items() if n)
    lines = [f"{summary.location}{batch}: {summary.total} inputs", f"  {counts or 'empty'}"]
    for owner, by_state in sorted(summary.by_owner.items()):
        held = summary.held.get(owner, 0)
        done = " · ".join(f"{state} {n}" for state, n in by_state.items() if n)
        lines.append(f"  process {owner}: holds {held}; last wrote {done}")
    if summary.oldest_lease is not None:
        lease = summary.oldest_lease
        when = (
            f"expires in {lease.expires_in:.1f} s"
            if lease.expires_in >= 0
            else f"expired {-lease.expires_in:.1f} s ago (its process stopped renewing it)"
        )
        lines.append(f"  oldest lease: {lease.owner} on {lease.key[:16]}, {when}")
    if summary.pause is not None:
        pause = summary.pause
        lines.append(
            f"  rate pause: creates resume in {pause.resume_in:.1f} s"
            if pause.resume_in > 0
            else "  rate pause: none"
        )
        if pause.quota is not None:
            lines.append(f"  daily quota reached: {one_line(pause.quota)}")
    return "\n".join(lines)


@ledger.command("status", epilog=EPILOG)
@click.argument("target", metavar="LEDGER", callback=ledger_target)
@json_option
def status(target: str | Path, as_json: bool) -> None:
    """Counts per state, per process, the oldest lease and the rate pause of LEDGER."""

    from ..bulk.ledger import Ledger

    async def go() -> LedgerSummary:
        async with await Ledger.open(_existing(target), create=False) as opened:
            return await opened.summary()

    summary = run_async(go())
    emit(summary_json(summary), as_json, summary_text(summary))


# ----------------------------------------------------------------------------- ls


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    """One ledger row as a JSON object."""
    return {
        "index": entry.input_index,
        "key": entry.key,
        "state": str(entry.state),
        "job_id": entry.job_id,
        "outcome": entry.outcome,
        "error": entry.error,
        "paths": None if entry.paths is None else dict(entry.paths),
        "owner": entry.owner,
        "updated_at": entry.updated_at,
    }


def entry_text(entry: LedgerEntry) -> str:
    """One ledger row for a person: index, key, state, job id, error."""
    error = f"  {one_line(entry.error)}" if entry.error else ""
    job = entry.job_id or "-"
    return f"{entry.input_index:>7}  {entry.key[:16]:16}  {entry.state:13}  {job:36}{error}"


@ledger.command("ls", epilog=EPILOG)
@click.argument("target", metavar="LEDGER", callback=ledger_target)
@click.option(
    "--state",
    type=click.Choice([s.value for s in LedgerState]),
    default=None,
    help="Only the inputs in this state.",
)
@json_option
def ls(target: str | Path, state: str | None, as_json: bool) -> None:
    """Every input of LEDGER (or those in --state): index, key, state, job id, error.

    The index is the input's position in the batch, from 0 (bulk's results name the line of
    --inputs instead, from 1). --json: one JSON object per input (JSON Lines).
    """

    from ..bulk.ledger import Ledger

    async def go() -> list[LedgerEntry]:
        async with await Ledger.open(_existing(target), create=False) as opened:
            return await opened.entries(None if state is None else LedgerState(state))

    for entry in run_async(go()):
        emit_line(entry_json(entry), as_json, entry_text(entry))


# ----------------------------------------------------------------------------- cancel


def report_json(report: CancelReport) -> dict[str, Any]:
    """What ``cancel`` did as a JSON object."""
    return {
        "deleted": len(report.deleted),
        "finished": len(report.finished),
        "not_created": len(report.not_created),
        "failed": report.failed,
        "left": {str(state): n for state, n in report.left.items()},
    }


def report_text(report: CancelReport) -> str:
    """What ``cancel`` did, for a person."""
    lines = [
        f"deleted {len(report.deleted)} job(s); {len(report.finished)} had finished (kept); "
        f"{len(report.not_created)} input(s) will not be created"
    ]
    for key, error in report.failed.items():
        lines.append(f"  not cancelled {key[:16]}: {one_line(error)}")
    for state, n in report.left.items():
        why = "a create under way" if state is LedgerState.CREATING else "no job id known"
        lines.append(f"  {n} input(s) {state} ({why}): run cancel again once they settle")
    return "\n".join(lines)


@ledger.command("cancel", epilog=EPILOG)
@click.argument("target", metavar="LEDGER", callback=ledger_target)
@connection_options
@json_option
def cancel(target: str | Path, as_json: bool, **conn: Any) -> None:
    """Delete every created job of LEDGER that is not finished, and record it.

    A job that finished meanwhile is kept (its outputs too) and recorded finished; inputs not
    created yet are recorded cancelled, so no process of a shared batch creates them. Exit 3
    if a job could not be deleted.
    """

    from ..bulk.cancel import cancel_batch
    from ..bulk.ledger import Ledger

    @with_session()
    async def go(session: Any) -> CancelReport:
        async with await Ledger.open(_existing(target), create=False) as opened:
            return await cancel_batch(session, opened)

    report = run_async(go(**conn))
    emit(report_json(report), as_json, report_text(report))
    sys.exit(EXIT_API_ERROR if report.failed else EXIT_OK)
