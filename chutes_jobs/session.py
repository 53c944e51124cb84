"""``ChutesSession``: the settings, the lifecycle and the user-facing entry points.

A session is the :class:`~chutes_jobs._http.Transport` every call goes through (credentials,
timeouts, retries, connection pools: ``chutes_jobs/_http/``), plus what a user calls on it:
:meth:`~ChutesSession.create_job`, :meth:`~ChutesSession.job`,
:meth:`~ChutesSession.job_from_status_url`, :meth:`~ChutesSession.submit_many`, and the
module-level :func:`run_and_report` for a worker.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from os import PathLike
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import yarl

from ._base_url import checked_base_url
from ._http import NO_BODY, Transport, map_transport_errors
from ._redact import redact_url
from ._version import __version__
from .auth import ApiKeyAuth, HotkeyAuth, SigningKeypair, UserAuth, load_keypair
from .bulk import BulkResult, submit_many
from .bulk.options import DEFAULT_CANCEL_GRACE
from .errors import ConfigurationError
from .instrumentation import Hook
from .job import JobHandle, create_job
from .models import Job
from .polling import PollPolicy
from .report import JobFunction, run_job
from .retry import RetryPolicy
from .transfer import ProgressCallback
from .worker import parse_status_url

__all__ = [
    "DEFAULT_BASE_URL",
    "NO_BODY",
    "ChutesSession",
    "map_transport_errors",
    "run_and_report",
]

DEFAULT_BASE_URL: Final = "https://api.chutes.ai"

_ENV_SETTINGS: Final = {
    "api_key": "CHUTES_API_KEY",
    "base_url": "CHUTES_BASE_URL",
    "hotkey": "CHUTES_HOTKEY_SEED",
    "user_id": "CHUTES_USER_ID",
}


def _user_agent() -> str:
    return f"chutes-jobs/{__version__}"


class ChutesSession(Transport):
    """A connection to the Chutes Jobs API: credentials, timeouts, retries, one connection pool.

    Use it as an async context manager (or call :meth:`close`). User calls authenticate with
    ``api_key`` (``Authorization`` header) and/or ``hotkey`` (a 64-hex seed or a
    ``bittensor_wallet.Keypair``; signs create requests, extra ``hotkey``). Worker calls carry
    a job token and need no credentials.

    Args:
        base_url: API root; a query string, fragment or user info in it raises
            :class:`~chutes_jobs.ConfigurationError`; plain ``http://`` is refused for a
            non-loopback host while credentials are set unless ``allow_insecure_http`` is true.
        api_key: a ``cpk_...`` API key or a ``cak_...`` OAuth access token, sent as given and
            masked by value in every repr, log line and error.
        hotkey: a hotkey seed (64 hex characters) or a keypair with ``ss58_address``/``sign``.
        user_id: kept for callers; never sent (the server ignores ``X-Chutes-UserID``).
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds of silence tolerated while reading an answer.
        request_timeout: total seconds for one JSON request attempt.
        retry_policy: when and how calls are retried (:class:`RetryPolicy` defaults).
        connection_limit: most simultaneous connections in the pool.
        user_agent: the ``User-Agent`` header (``chutes-jobs/<version>``).
        allow_insecure_http: permit credentials over plain http to a remote host.
        session: an ``aiohttp.ClientSession`` the caller owns; used as is, never closed.
        hooks: instrumentation hooks called with the events of this session's calls, after
            the process-wide ones (:mod:`chutes_jobs.instrumentation`); a hook that raises is
            logged once and never breaks a call.
    """

    def __init__(
        self,
        *,
        base_url: str | yarl.URL = DEFAULT_BASE_URL,
        api_key: str | None = None,
        hotkey: str | SigningKeypair | None = None,
        user_id: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        request_timeout: float = 120.0,
        retry_policy: RetryPolicy | None = None,
        connection_limit: int = 100,
        user_agent: str | None = None,
        allow_insecure_http: bool = False,
        session: aiohttp.ClientSession | None = None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        url = checked_base_url(base_url)
        self.user_id = user_id
        super().__init__(
            base_url=url,
            auth=UserAuth(
                api_key=ApiKeyAuth(api_key) if api_key else None,
                hotkey=HotkeyAuth(load_keypair(hotkey)) if hotkey is not None else None,
            ),
            user_agent=user_agent or _user_agent(),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_timeout=request_timeout,
            retry_policy=retry_policy if retry_policy is not None else RetryPolicy(),
            connection_limit=connection_limit,
            allow_insecure_http=allow_insecure_http,
            session=session,
            hooks=hooks,
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """A session configured from the environment; keyword ``overrides`` win.

        Reads ``CHUTES_API_KEY``, ``CHUTES_BASE_URL``, ``CHUTES_HOTKEY_SEED`` and
        ``CHUTES_USER_ID`` (empty values are ignored).
        """
        settings: dict[str, Any] = {
            name: os.environ[var] for name, var in _ENV_SETTINGS.items() if os.environ.get(var)
        }
        settings.update(overrides)
        return cls(**settings)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.http  # noqa: B018 - open the pool inside the running loop
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"ChutesSession(base_url={str(self.base_url)!r}, auth={self.auth_kind!r})"

    # -- jobs ------------------------------------------------------------------------------

    async def create_job(
        self,
        chute_id: str,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        disk_gb: float | None = None,
    ) -> JobHandle:
        """Create (and so pay for) one job of ``chute_id``'s ``method``; return its handle.

        A create is never re-sent once it may have reached the server (see :class:`CallKind`).
        """
        return await create_job(self, chute_id, method, args, disk_gb=disk_gb)

    def submit_many(
        self,
        chute_id: str,
        method: str,
        inputs: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        concurrency: int = 32,
        wait: bool = False,
        download_to: str | PathLike[str] | None = None,
        ledger: str | PathLike[str] | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
        disk_gb: float | None = None,
        poll: PollPolicy | None = None,
        poll_concurrency: int | None = None,
        download_concurrency: int = 4,
        wait_timeout: float | None = None,
        resubmit_unknown: bool = False,
        max_in_flight: int | None = None,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
        progress: ProgressCallback | None = None,
        on_job: Callable[[Job], None] | None = None,
    ) -> AsyncGenerator[BulkResult, None]:
        """Create one job per input; yield a :class:`~chutes_jobs.BulkResult` each, as they end.

        ``inputs`` (an iterable or async iterable of job-argument mappings) is read lazily:
        at most ``max_in_flight`` inputs are taken and not yet yielded (default: 4 per
        submitter, or 4096 when waiting). One input failing never stops the others.

        Args:
            concurrency: creates under way at once.
            wait: poll each job until it finishes (``BulkResult.job`` is the final Job).
            download_to: also download each job's outputs into ``download_to/<job_id>/``.
            ledger: a SQLite file recording every step per input key: a re-run skips what was
                submitted, resumes waiting and downloading, never creates a job twice. Or a
                ``postgresql://`` URL (extra ``postgres``): any number of processes, on any
                machines, started with the same chute, method and inputs, work the batch
                together, each yielding the results of the inputs it worked on (README, "Many
                machines").
            key: an input's ledger key (default: sha256 of its canonical JSON).
            disk_gb: the disk size of every job.
            poll, poll_concurrency, wait_timeout: polling policy, GETs at once (default
                ``concurrency``), seconds per job before giving up waiting.
            download_concurrency: jobs downloading at once.
            resubmit_unknown: create again the inputs whose earlier create's answer was lost
                (a job may exist for them; by default they are reported ``UNKNOWN``).
            cancel_grace: when the run is stopped, seconds creates under way get to finish
                before they are cancelled and recorded ``unknown``.
            progress: called with the :class:`~chutes_jobs.TransferProgress` of every output
                download, its ``filename`` being ``<job_id>/<filename>``.
            on_job: called with every job snapshot the run receives (each create's answer
                and each poll), e.g. for live counters.

        A 429 with Retry-After pauses every create of the run; a daily-quota 429 stops all
        further creates (the remaining inputs are reported ``NOT_SUBMITTED`` with
        :class:`~chutes_jobs.errors.QuotaExceededError`). The generator stops the run when
        closed: wrap it in ``contextlib.aclosing`` to stop at once when leaving the loop early.
        """
        return submit_many(
            self, chute_id, method, inputs, concurrency=concurrency, wait=wait,
            download_to=download_to, ledger=ledger, key=key, disk_gb=disk_gb, poll=poll,
            poll_concurrency=poll_concurrency, download_concurrency=download_concurrency,
            wait_timeout=wait_timeout, resubmit_unknown=resubmit_unknown,
            max_in_flight=max_in_flight, cancel_grace=cancel_grace, progress=progress,
            on_job=on_job,
        )  # fmt: skip

    def job(self, job_id: str) -> JobHandle:
        """A handle on an existing job, for its user (nothing is sent yet)."""
        return JobHandle(self, job_id)

    def job_from_status_url(self, status_url: str) -> JobHandle:
        """A worker's handle built from the job status URL ``{base}/jobs/{id}?token=...``.

        The URL's base must be this session's ``base_url``
        (``ChutesSession(base_url=...)``); a mismatch raises ``ConfigurationError``.
        """
        parsed = parse_status_url(status_url)
        if yarl.URL(parsed.base_url.rstrip("/")) != self.base_url:
            raise ConfigurationError(
                f"the status URL points to {redact_url(parsed.base_url)} but this session talks "
                f"to {self.base_url}: create the session with base_url={parsed.base_url!r}"
            )
        return JobHandle(self, parsed.job_id, token=parsed.token)


async def run_and_report(status_url: str, fn: JobFunction, /, **job_args: Any) -> Job:
    """Run ``fn(output_dir=..., **job_args)`` as the worker of the job at ``status_url``.

    Its return value becomes the job's ``result`` (a dict as is, None as null, anything else
    wrapped as ``{"result": value}``; a value that is not JSON makes the job an ``"error"``);
    an exception becomes status ``"error"`` with the traceback as detail; cancellation becomes
    ``"cancelled"`` (and is re-raised after reporting). Every file the function writes under
    ``output_dir`` (subfolders kept) is uploaded, then the job is completed, always. One pooled
    :class:`~chutes_jobs.ChutesSession` (no user credentials needed) carries every call.
    Returns the final :class:`~chutes_jobs.Job`; a failing function does not raise here.
    """
    async with ChutesSession(base_url=parse_status_url(status_url).base_url) as session:
        handle = session.job_from_status_url(status_url)
        return await run_job(handle, fn, job_args)
