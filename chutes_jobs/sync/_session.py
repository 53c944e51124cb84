"""The blocking ``ChutesSession``, ``JobHandle``, ``BulkResult`` and ``run_and_report``.

Each is a thin twin of the async class of the same name (``.aio``): its methods are made from
the async ones by :mod:`._twin` and run on the session's :class:`~chutes_jobs._loop_thread.
LoopThread`; only what cannot be made that way is written here.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Self

import attrs
import yarl

import chutes_jobs as aio
from chutes_jobs import ConfigurationError, Job

from .._loop_thread import LoopThread
from ..instrumentation.hooks import HookSet
from ._twin import (
    ClosingTwin,
    Twin,
    blocking,
    converting,
    docs_from,
    iterating,
    parameters_of,
    plain,
)

__all__ = ["BulkResult", "ChutesSession", "JobHandle", "SyncJobFunction", "run_and_report"]

#: A job function for the blocking API: ``fn(*, output_dir: Path, **job_args)``, either a plain
#: function (run in a worker thread, so the session's loop stays free) or an ``async def``
#: (run on the session's loop).
SyncJobFunction = Callable[..., Any]


class JobHandle(Twin):
    """Blocking twin of :class:`chutes_jobs.JobHandle`: the same methods, each waiting for its
    result; :meth:`watch` is a plain iterator.

    Get one from :meth:`ChutesSession.create_job`, :meth:`ChutesSession.job` or
    :meth:`ChutesSession.job_from_status_url`. Several threads may use one handle at once.
    ``aio`` is the async handle underneath (await it only on the session's loop).
    """

    def __init__(
        self,
        session: ChutesSession,
        job_id: str,
        *,
        job: Job | None = None,
        token: str | None = None,
    ) -> None:
        self._attach(session, aio.JobHandle(session.aio, job_id, job=job, token=token))

    def _attach(self, session: ChutesSession, handle: aio.JobHandle) -> None:
        self._session = session
        self._loop = session._loop
        self.aio: aio.JobHandle = handle

    @classmethod
    def _of(cls, session: ChutesSession, handle: aio.JobHandle) -> JobHandle:
        twin = cls.__new__(cls)
        twin._attach(session, handle)
        return twin

    def __repr__(self) -> str:
        return repr(self.aio)

    @property
    def id(self) -> str:
        """The job id."""
        return self.aio.id

    @property
    def job(self) -> Job | None:
        """The last snapshot of the job seen by this handle (None before any)."""
        return self.aio.job

    @property
    def path(self) -> str:
        """The job's API path, ``/jobs/{job_id}``."""
        return self.aio.path

    refresh = blocking(aio.JobHandle.refresh)
    watch = iterating(aio.JobHandle.watch)
    wait = blocking(aio.JobHandle.wait)
    delete = blocking(aio.JobHandle.delete)
    output_file = blocking(aio.JobHandle.output_file)
    download = blocking(aio.JobHandle.download)
    download_outputs = blocking(aio.JobHandle.download_outputs)
    finish = blocking(aio.JobHandle.finish)
    upload = blocking(aio.JobHandle.upload)
    upload_outputs = blocking(aio.JobHandle.upload_outputs)
    complete = blocking(aio.JobHandle.complete)

    @docs_from(aio.JobHandle.run_and_report)
    def run_and_report(self, fn: SyncJobFunction, /, **job_args: Any) -> Job:
        return self._loop.run(self.aio.run_and_report(_job_function(fn), **job_args))


@attrs.frozen
class BulkResult(aio.BulkResult):
    """:class:`chutes_jobs.BulkResult` as the blocking :meth:`ChutesSession.submit_many` yields
    it: ``handle`` is a blocking :class:`JobHandle` (None when no job was created)."""

    handle: JobHandle | None = None  # type: ignore[assignment]


def _bulk_result(session: ChutesSession, result: aio.BulkResult) -> BulkResult:
    handle = None if result.handle is None else JobHandle._of(session, result.handle)
    return BulkResult(**{**attrs.asdict(result, recurse=False), "handle": handle})


class ChutesSession(ClosingTwin):
    """Blocking twin of :class:`chutes_jobs.ChutesSession`: the same arguments and methods,
    each waiting for its result; :meth:`submit_many` is a plain iterator.

    The session runs its own event loop in a daemon thread (started on first use, stopped by
    :meth:`close` or the ``with`` block's end, started again if used after that), which owns
    its connections. Any thread may call, several at once; a thread with a running event loop
    (a Jupyter cell) too, which then waits like any blocking call. Callbacks (``progress``,
    ``on_job``, ``key``) run on the session's thread: calling this blocking API from there
    raises :class:`~chutes_jobs.BlockingCallError`. Ctrl-C while a call waits cancels it on
    the loop, waits for its cleanup (a download keeps its ``.part``, ``submit_many`` records
    the creates under way and closes its ledger) and raises ``KeyboardInterrupt``.

    ``session=`` (an ``aiohttp.ClientSession``) is refused: it belongs to another event loop.
    ``aio`` is the async session underneath (await it only on the session's loop).
    """

    @parameters_of(aio.ChutesSession.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("session") is not None:
            raise ConfigurationError(
                "chutes_jobs.sync.ChutesSession runs its own event loop, so it cannot use an "
                "aiohttp.ClientSession made on another one: drop session= and set the "
                "connection options (connection_limit=, the timeouts) instead, or use the "
                "async chutes_jobs.ChutesSession"
            )
        self._attach(aio.ChutesSession(*args, **kwargs))

    def _attach(self, session: aio.ChutesSession) -> None:
        self.aio: aio.ChutesSession = session
        self._loop = LoopThread(f"chutes-jobs-sync-{id(self):x}")
        # An unclosed session (a notebook's) is closed when collected, or at exit.
        weakref.finalize(self, self._loop.stop, session.close, wait=True)

    @classmethod
    @docs_from(aio.ChutesSession.from_env)
    def from_env(cls, **overrides: Any) -> Self:
        from_env = vars(aio.ChutesSession)["from_env"].__func__  # the settings, read in one place
        session: Self = from_env(cls, **overrides)
        return session

    def __enter__(self) -> Self:
        self._loop.run(self.aio.__aenter__())
        return self

    def close(self) -> None:
        super().close()

    close.__doc__ = (
        f"{aio.ChutesSession.close.__doc__}\n\n"
        "        Then stops the session's event loop thread (a later call starts a new one)."
    )

    def __repr__(self) -> str:
        return repr(self.aio)

    @property
    def base_url(self) -> yarl.URL:
        """The API root every relative path is joined to."""
        return self.aio.base_url

    @property
    def has_user_credentials(self) -> bool:
        """True when an API key or a hotkey is set (user calls are possible)."""
        return self.aio.has_user_credentials

    @property
    def auth_kind(self) -> str:
        """Which user credentials are set: ``api_key``, ``hotkey``, ``api_key+hotkey``, ``none``."""
        return self.aio.auth_kind

    @property
    def hooks(self) -> HookSet:
        """The instrumentation hooks of this session's calls (process-wide ones first); they
        run on the session's loop thread."""
        return self.aio.hooks

    create_job = converting(aio.ChutesSession.create_job, JobHandle._of)
    submit_many = iterating(aio.ChutesSession.submit_many, _bulk_result)
    job = plain(aio.ChutesSession.job, JobHandle._of)
    job_from_status_url = plain(aio.ChutesSession.job_from_status_url, JobHandle._of)
    url = plain(aio.ChutesSession.url)
    request = blocking(aio.ChutesSession.request)


def _job_function(fn: SyncJobFunction) -> Callable[..., Awaitable[Any]]:
    """``fn`` as the async job function the worker code awaits: an ``async def`` as is, a
    plain function run in a worker thread (its result awaited when it is awaitable)."""
    if inspect.iscoroutinefunction(fn):
        return fn

    async def in_thread(**job_args: Any) -> Any:
        value = await asyncio.to_thread(fn, **job_args)
        return await value if inspect.isawaitable(value) else value

    return in_thread


@docs_from(aio.run_and_report)
def run_and_report(status_url: str, fn: SyncJobFunction, /, **job_args: Any) -> Job:
    loop = LoopThread("chutes-jobs-worker")
    try:
        return loop.run(aio.run_and_report(status_url, _job_function(fn), **job_args))
    finally:
        loop.stop()
