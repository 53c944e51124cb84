"""The emulator's state: users and their credentials, chutes, jobs. Plain in-memory records."""

from __future__ import annotations

import re
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..models import ChuteSummary, InstanceSummary, Job, OutputFile, job_to_json

__all__ = [
    "API_KEY_PATTERN",
    "Chute",
    "ChuteMethod",
    "JobRecord",
    "Store",
    "User",
    "new_api_key",
    "new_oauth_token",
    "utcnow",
]

#: The shape the live server accepts before it even looks a key up.
API_KEY_PATTERN = re.compile(r"^cpk_[a-f0-9]{32}\.[a-f0-9]{32}\.[a-zA-Z0-9]{32}$")

#: A local chute method: ``async fn(output_dir=Path, **job_args) -> dict | Any``.
ChuteMethod = Callable[..., Awaitable[Any]]

_ALNUM = string.ascii_letters + string.digits


def utcnow() -> datetime:
    """Now, timezone-aware UTC (rendered naive, as the live server does)."""
    return datetime.now(UTC)


def new_oauth_token() -> str:
    """A fresh OAuth access token: ``cak_`` and 43 URL-safe characters."""
    return f"cak_{secrets.token_urlsafe(32)}"


def new_api_key(user_id: str) -> str:
    """A fresh key in the live format ``cpk_<key id hex>.<user id hex>.<32 alnum>``."""
    tail = "".join(secrets.choice(_ALNUM) for _ in range(32))
    return f"cpk_{uuid.uuid4().hex}.{uuid.UUID(user_id).hex}.{tail}"


@dataclass
class User:
    """A user of the emulator, with its API keys and registered hotkeys (ss58)."""

    user_id: str
    username: str
    api_keys: set[str] = field(default_factory=set)
    hotkeys: set[str] = field(default_factory=set)
    #: OAuth access tokens (``cak_...``) and the scopes each holds.
    oauth_tokens: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def api_key(self) -> str:
        """One of the user's API keys (the first one added)."""
        return next(iter(self.api_keys))


@dataclass
class Chute:
    """A local chute: named async methods run in-process when a job is created.

    A method mapped to ``None`` exists for create but runs nowhere: its jobs wait for an
    external worker holding the job status URL.
    """

    chute_id: str
    name: str
    methods: dict[str, ChuteMethod | None]
    public: bool = True
    owner_id: str | None = None
    shared_with: set[str] = field(default_factory=set)
    version: str = field(default_factory=lambda: str(uuid.uuid4()))
    chutes_version: str = "0.3.0"
    image_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def visible_to(self, user_id: str) -> bool:
        """Public, owned by, or shared with ``user_id``."""
        return self.public or user_id == self.owner_id or user_id in self.shared_with

    def summary(self) -> ChuteSummary:
        """The ``chute`` object embedded in the Job JSON."""
        return ChuteSummary(
            chute_id=self.chute_id,
            name=self.name,
            public=self.public,
            version=self.version,
            slug=f"emulator-{self.name}",
            chutes_version=self.chutes_version,
            preemptible=False,
            image={
                "image_id": self.image_id,
                "name": f"emulator/{self.name}",
                "tag": "local",
                "public": self.public,
                "patch_version": None,
            },
        )


@dataclass
class JobRecord:
    """One job row, with the fields the live server stores (``status``, ``error_detail``...)."""

    job_id: str
    user_id: str
    chute: Chute
    method: str
    job_args: dict[str, Any]
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    instance: InstanceSummary | None = None
    active: bool = False
    verified: bool = False
    status: str = "pending"
    result: Any = None
    error_detail: str | None = None
    #: ``{file_id: {"filename", "path", "uploaded"}}``; None until the first finish.
    output_files: dict[str, dict[str, Any]] | None = None

    def touch(self) -> None:
        """Record a change (``updated_at``)."""
        self.updated_at = utcnow()

    def storage_key(self, filename: str) -> str:
        """The live server's object-store key for an output file."""
        day = self.created_at.strftime("%Y-%m-%d")
        return f"jobs/{self.chute.chute_id}/{day}/{self.job_id}/outputs/{filename}"

    def to_model(self) -> Job:
        """This row as a :class:`~chutes_jobs.models.Job`."""
        files = {
            file_id: OutputFile(file_id, info["filename"], info["path"], info["uploaded"])
            for file_id, info in (self.output_files or {}).items()
        }
        return Job(
            job_id=self.job_id,
            user_id=self.user_id,
            chute_id=self.chute.chute_id,
            version=self.chute.version,
            chutes_version=self.chute.chutes_version,
            method=self.method,
            instance_id=self.instance.instance_id if self.instance else None,
            active=self.active,
            verified=self.verified,
            created_at=self.created_at,
            updated_at=self.updated_at,
            finished_at=self.finished_at,
            job_args=self.job_args,
            result=self.result,
            output_files=files,
            chute=self.chute.summary(),
            instance=self.instance,
            status=self.status,
            error_detail=self.error_detail,
        )

    def to_json(
        self, *, include_status: bool = False, upload_urls: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The Job JSON as the live server renders it (``output_files`` null before finish)."""
        data = job_to_json(self.to_model(), include_status=include_status)
        if self.output_files is None:
            data["output_files"] = None
        data["output_storage_urls"] = dict(upload_urls or {})
        return data


class Store:
    """Every user, chute and job of one emulator."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.chutes: dict[str, Chute] = {}
        self.jobs: dict[str, JobRecord] = {}

    def add_user(
        self,
        *,
        username: str | None = None,
        api_keys: Iterable[str] = (),
        hotkeys: Iterable[str] = (),
        user_id: str | None = None,
    ) -> User:
        """Register a user; without any key given, one API key is generated."""
        user_id = user_id or str(uuid.uuid4())
        user = User(user_id, username or f"user-{user_id[:8]}", set(api_keys), set(hotkeys))
        if not user.api_keys:
            user.api_keys.add(new_api_key(user_id))
        self.users[user_id] = user
        return user

    def user_by_api_key(self, key: str) -> User | None:
        """The user holding ``key``, if any."""
        return next((u for u in self.users.values() if key in u.api_keys), None)

    def user_by_oauth_token(self, token: str) -> tuple[User, frozenset[str]] | None:
        """The user holding the OAuth access token ``token``, and its scopes, if any."""
        for user in self.users.values():
            if token in user.oauth_tokens:
                return user, user.oauth_tokens[token]
        return None

    def user_by_hotkey(self, hotkey: str) -> User | None:
        """The user who registered ``hotkey`` (ss58), if any."""
        return next((u for u in self.users.values() if hotkey in u.hotkeys), None)

    def find_chute(self, ref: str, method: str, user_id: str) -> Chute | None:
        """The chute with this id or name, having ``method``, that ``user_id`` may use."""
        chute = self.chutes.get(ref) or next(
            (c for c in self.chutes.values() if c.name == ref), None
        )
        if chute is None or method not in chute.methods or not chute.visible_to(user_id):
            return None
        return chute

    def jobs_today(self, user_id: str, chute_id: str) -> tuple[int, int]:
        """(jobs of this user on this chute, all jobs of this user) created today, UTC."""
        today = utcnow().date()
        mine = [j for j in self.jobs.values() if j.user_id == user_id]
        mine = [j for j in mine if j.created_at.date() == today]
        return sum(1 for j in mine if j.chute.chute_id == chute_id), len(mine)

    def user_job(self, job_id: str, user_id: str) -> JobRecord | None:
        """The job if it exists and belongs to ``user_id``."""
        job = self.jobs.get(job_id)
        return job if job is not None and job.user_id == user_id else None
