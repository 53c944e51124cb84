"""A PostgreSQL server for the ledger benchmarks (not a test, not part of the package).

``postgres_server(url)`` yields an admin URL: ``url`` when given (a role that may create
databases), else a throwaway cluster (``initdb`` into a temp folder, a free port, run as the
``postgres`` user when we are root, stopped and removed at the end), else None with the reason
printed. ``fresh_database(admin_url)`` creates an empty database and returns its URL;
``server_cpu(admin_url)`` the CPU seconds the cluster's processes used so far (throwaway
cluster only, else 0).
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

_BIN_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
#: The postmaster pid of the throwaway cluster, by admin URL.
_POSTMASTERS: dict[str, int] = {}


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = (os.path.join(folder, name) for folder in _BIN_DIRS)
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[str | None]:
    """An admin URL of a PostgreSQL server, or None (the reason printed)."""
    if url:
        yield url
        return
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        print("PostgreSQL rows skipped: no initdb/pg_ctl found and no --postgres URL given")
        yield None
        return
    prefix = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="chutes-jobs-bench-pg-"))
    if prefix:
        shutil.chown(root, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    run = [*prefix, pg_ctl, "-D", str(data)]
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        subprocess.run([*run, "-o", options, "-l", str(root / "log"), "-w", "start"],
                       check=True, capture_output=True)  # fmt: skip
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _POSTMASTERS[admin] = int((data / "postmaster.pid").read_text().split()[0])
        yield admin
    finally:
        subprocess.run([*run, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """Create an empty database; its URL."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def server_cpu(admin_url: str) -> float:
    """CPU seconds used so far by the throwaway cluster's processes (0 for another server);
    exited backends are counted through their parent's ``cutime``/``cstime``."""
    postmaster = _POSTMASTERS.get(admin_url)
    if postmaster is None:
        return 0.0
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.split("/")[2]), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / tick  # its own and its reaped children
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total
