"""A PostgreSQL server for the tests: ``CHUTES_TEST_POSTGRES_URL``, else a throwaway cluster.

The throwaway cluster is what ``.ci/postgres.sh`` makes: initdb into a temporary folder, trust
auth, listening on 127.0.0.1 only, its unix socket in its own folder; as root the server runs as
the ``postgres`` user (initdb refuses root). Each test gets a fresh database in it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

URL_VARIABLE = "CHUTES_TEST_POSTGRES_URL"
NOT_FOUND = (
    "PostgreSQL server binaries not found (set CHUTES_TEST_POSTGRES_URL or install postgresql)"
)


def cannot_start_reason() -> str | None:
    """Why this machine cannot start a throwaway cluster, or None when it can."""
    if server_bindir() is None:
        return NOT_FOUND
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return f"running as root with no postgres user to run a server as (set {URL_VARIABLE})"
    return None


def server_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: PATH first, then Debian's versioned folders."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    return next((Path(f) for f in folders if os.access(Path(f, "initdb"), os.X_OK)), None)


def _major(folder: str) -> int:
    version = Path(folder).parent.name
    return int(version) if version.isdigit() else 0


class ThrowawayCluster:
    """``initdb`` + ``pg_ctl start`` in a temporary folder; :meth:`stop` removes it all."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="chutes-pg-"))
        self._as_root = os.geteuid() == 0

    def start(self) -> str:
        """Start the server; returns its URL (user ``postgres``, database ``postgres``)."""
        if self._as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        data = self.folder / "data"
        self._run(
            "initdb",
            f"--pgdata={data}",
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {self.folder} -c fsync=off"
        log = self.folder / "server.log"
        self._run("pg_ctl", f"--pgdata={data}", f"--log={log}", "--wait", "-o", options, "start")
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            data = self.folder / "data"
            self._run("pg_ctl", f"--pgdata={data}", "--mode=immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on ``server_url``'s server, dropped afterwards; yields its URL."""
    name = f"chutes_test_{uuid.uuid4().hex}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
