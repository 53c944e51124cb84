"""The :class:`Emulator`: a local Chutes Jobs API server, its users, chutes and job runner."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .auth import SCOPE_READ, SCOPE_WRITE
from .chutes import DEMO_CHUTE_NAME, demo_methods
from .faults import FaultPlan
from .routes import Options, Routes
from .runner import JobRunner
from .server import RequestRecord, Server
from .storage import BlobStore
from .store import Chute, ChuteMethod, JobRecord, Store, User, new_oauth_token
from .tokens import TokenIssuer

__all__ = ["Emulator"]


class Emulator:
    """A faithful local Chutes Jobs API on loopback (see ``docs/PROTOCOL.md``), for tests and demos.

    ``live_quirks=True`` reproduces the live server's bugs (delete answers 500 and keeps the job,
    500s after a non-object result, no Range). ``range_support`` enables 206 answers to
    ``Range``; ``expose_status`` adds ``status``/``error_detail`` to the Job JSON;
    ``daily_quota``/``daily_total_quota`` limit jobs per user per chute / per user per day.
    Jobs of local chutes start after ``schedule_delay`` seconds. ``token_secret`` fixes the
    worker tokens' signing key (random by default), so another process can mint tokens;
    ``token_algorithm="ES256"`` issues ES256 tokens instead (the live server verifies both).
    Users authenticate with an API key, a hotkey signature or an OAuth access token
    (:meth:`add_oauth_token`, with scopes).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | Path | None = None,
        live_quirks: bool = False,
        range_support: bool = True,
        expose_status: bool = False,
        daily_quota: int | None = None,
        daily_total_quota: int | None = None,
        demo_chute: bool = True,
        schedule_delay: float = 0.05,
        fault_seed: int = 0,
        token_secret: str | None = None,
        token_algorithm: str = "HS256",
    ) -> None:
        self.host = host
        self.port = port
        self.options = Options(
            live_quirks, range_support, expose_status, daily_quota, daily_total_quota
        )
        self.store = Store()
        self.tokens = TokenIssuer(token_secret, token_algorithm)
        #: The fault plan: ``emu.faults.add("download", cut_after=1_000_000)``.
        self.faults = FaultPlan(fault_seed)
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._own_data_dir = data_dir is None
        self._schedule_delay = schedule_delay
        self._server: Server | None = None
        self._runner: web.AppRunner | None = None
        self._jobs: JobRunner | None = None
        #: The default user; :attr:`api_key` is its key.
        self.user = self.store.add_user(username="emulator")
        #: The ``demo`` chute's id, when ``demo_chute=True``.
        self.demo_chute_id = self.add_chute(DEMO_CHUTE_NAME, demo_methods()) if demo_chute else None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Emulator:
        """Bind the port and serve; returns ``self``."""
        if self._data_dir is None:
            self._data_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="chutes-emu-"))
        blobs = BlobStore(self._data_dir)
        routes = Routes(
            self.store, self.tokens, blobs, self.options,
            base_url=lambda: self.base_url, on_create=self._job_created,
            on_delete=self._job_deleted,
        )  # fmt: skip
        self._server = Server(routes, self.faults)
        self._runner = web.AppRunner(self._server.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        work_root = self._data_dir / "work"
        work_root.mkdir(exist_ok=True)
        self._jobs = JobRunner(
            self.store, self.job_status_url, base_url=self.base_url,
            work_root=work_root, schedule_delay=self._schedule_delay,
        )  # fmt: skip
        return self

    async def close(self) -> None:
        """Stop the job runs, release hung requests, stop serving, remove a temporary data dir."""
        self.faults.shutdown()
        if self._jobs is not None:
            await self._jobs.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._own_data_dir and self._data_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._data_dir, True)
        self._jobs = self._runner = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses and credentials -------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port``, no trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The default user's API key (``cpk_...``)."""
        return self.user.api_key

    @property
    def data_dir(self) -> Path | None:
        """Where uploaded files are stored (set once started)."""
        return self._data_dir

    def job_status_url(self, job_id: str) -> str:
        """The URL a worker of ``job_id`` holds: ``{base_url}/jobs/{job_id}?token=<jwt>``."""
        return f"{self.base_url}/jobs/{job_id}?token={self.tokens.issue(job_id)}"

    # -- users, chutes, jobs -------------------------------------------------------------

    def add_user(
        self,
        *,
        username: str | None = None,
        api_key: str | None = None,
        hotkey: str | None = None,
    ) -> User:
        """Register a user; gets a fresh API key unless ``api_key`` is given.

        ``hotkey`` is an ss58 address whose signatures then authenticate as this user.
        """
        keys = [api_key] if api_key else []
        hotkeys = [hotkey] if hotkey else []
        return self.store.add_user(username=username, api_keys=keys, hotkeys=hotkeys)

    def add_oauth_token(
        self,
        scopes: Iterable[str] = (SCOPE_READ, SCOPE_WRITE),
        *,
        user: User | None = None,
        token: str | None = None,
    ) -> str:
        """An OAuth access token (``cak_...``) of ``user`` (default: the default user).

        It authenticates like an API key; a route needing a scope it lacks answers 403
        ``Token does not have permission for this resource``. Scopes: ``"jobs:read"`` (read
        a job, download its files) and ``"jobs:write"`` (create and delete jobs).
        """
        token = token or new_oauth_token()
        if not token.startswith("cak_"):
            raise ValueError(f"an OAuth access token starts with 'cak_', got {token[:4]!r}...")
        (user or self.user).oauth_tokens[token] = frozenset(scopes)
        return token

    def add_chute(
        self,
        name: str,
        methods: dict[str, ChuteMethod | None],
        *,
        public: bool = True,
        owner: User | str | None = None,
        shared_with: Iterable[User | str] = (),
        chute_id: str | None = None,
    ) -> str:
        """Register a local chute; returns its ``chute_id`` (create accepts it or ``name``).

        Each method is ``async fn(output_dir: Path, **job_args)``; what it writes to
        ``output_dir`` becomes the job's output files. ``None`` leaves jobs to an outside worker.
        A private chute is usable by its ``owner`` (default: the default user) and
        ``shared_with``.
        """
        owner_id = _user_id(owner) if owner is not None else self.user.user_id
        chute = Chute(
            chute_id=chute_id or str(uuid.uuid4()),
            name=name,
            methods=dict(methods),
            public=public,
            owner_id=owner_id,
            shared_with={_user_id(u) for u in shared_with},
        )
        self.store.chutes[chute.chute_id] = chute
        return chute.chute_id

    def job(self, job_id: str) -> JobRecord:
        """The stored job (``KeyError`` if unknown), including ``status`` and ``error_detail``."""
        return self.store.jobs[job_id]

    def job_json(self, job_id: str) -> dict[str, Any]:
        """The stored job as JSON, with ``status`` and ``error_detail``."""
        return self.job(job_id).to_json(include_status=True)

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a local run; its worker reports status ``cancelled``. False if not running."""
        return self._jobs is not None and self._jobs.stop(job_id, report=True)

    async def wait_job(self, job_id: str) -> None:
        """Until the local run of ``job_id`` (if any) has reported and ended."""
        if self._jobs is not None:
            await self._jobs.wait(job_id)

    async def wait_idle(self) -> None:
        """Until every local run has ended."""
        if self._jobs is not None:
            await self._jobs.wait()

    # -- observation ---------------------------------------------------------------------

    @property
    def counts(self) -> Counter[str]:
        """Requests received per route name (``create``, ``get``, ... ``download``)."""
        return self._server.counts if self._server is not None else Counter()

    @property
    def requests(self) -> list[RequestRecord]:
        """Every routed request, in order (route, method, path, a few headers incl. Range)."""
        return self._server.requests if self._server is not None else []

    def _job_created(self, job: JobRecord) -> None:
        if self._jobs is not None:
            self._jobs.start(job)

    def _job_deleted(self, job: JobRecord) -> None:
        if self._jobs is not None:
            self._jobs.stop(job.job_id, report=False)


def _user_id(user: User | str) -> str:
    return user.user_id if isinstance(user, User) else user
