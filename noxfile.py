"""CI sessions, run by ``.ci/run``: the suite on every supported Python with the newest
dependencies, on the oldest Python with the lowest declared ones, the linters once, and the
fault suite (``pytest -m faults``, left out of the other sessions) once.

    nox -l                                  # the sessions
    nox -s tests_lowest                     # one session
    nox -s tests-3.12 -- tests/test_ledger.py -x    # pytest arguments after ``--``

Interpreters come from pyenv (``$PYENV_ROOT/versions/X.Y.Z``) or ``pythonX.Y`` on PATH; they
are never downloaded. A session whose interpreter is missing is skipped with the reason
(``.ci/run`` makes the oldest one required with ``--error-on-missing-interpreters``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import nox

nox.needs_version = ">=2025.10.14"  # download_python
nox.options.default_venv_backend = "uv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["tests", "tests_lowest", "lint", "faults"]

ROOT = Path(__file__).parent
PYTHONS = ["3.11", "3.12", "3.13"]
OLDEST = PYTHONS[0]  # requires-python's floor
#: Every extra, so the whole suite runs (the PostgreSQL, OpenTelemetry and hotkey tests too).
INSTALL = ".[test,hotkey,cli,postgres,otel]"


def _version_of(python: str) -> str | None:
    """``"X.Y"`` of the interpreter at ``python``, or None when it does not run."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _patch_level(path: Path) -> tuple[int, ...]:
    """The version in a pyenv path (``.../versions/3.12.1/bin/python3.12``), for sorting."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parents[1].name))


def _find_interpreter(version: str) -> str | None:
    """A working ``pythonX.Y``: pyenv's newest patch release first, then PATH.

    pyenv's shims answer to every version's name, installed or not, so its real interpreters
    are looked up under ``versions/`` and each candidate is run to confirm its version.
    """
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    pattern = f"versions/{version}.*/bin/python{version}"
    candidates = [str(p) for p in sorted(pyenv.glob(pattern), key=_patch_level, reverse=True)]
    on_path = shutil.which(f"python{version}")
    if on_path is not None:
        candidates.append(on_path)
    return next((c for c in candidates if _version_of(c) == version), None)


def _expose_interpreters() -> None:
    """Put the interpreters found on nox's PATH, as ``pythonX.Y`` links in ``.nox/_python``."""
    folder = ROOT / ".nox" / "_python"
    folder.mkdir(parents=True, exist_ok=True)
    for version in PYTHONS:
        link = folder / f"python{version}"
        found = _find_interpreter(version)
        if found is None:
            link.unlink(missing_ok=True)
            continue
        # Made aside and renamed into place: ``.ci/run`` starts several nox at once.
        fresh = folder / f".python{version}.{os.getpid()}"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(found)
        fresh.replace(link)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


_expose_interpreters()


def _pytest(session: nox.Session) -> None:
    """The README's test command, with any arguments given after ``--``."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite with the newest versions of every dependency."""
    session.install(INSTALL)
    _pytest(session)


@nox.session(python=OLDEST)
def tests_lowest(session: nox.Session) -> None:
    """The whole suite with the lowest versions ``pyproject.toml`` declares (lowest-direct)."""
    session.install("--resolution", "lowest-direct", INSTALL)
    _pytest(session)


#: Seconds the fault suite may take in all, and one of its tests (pytest-timeout: a hang fails
#: with every thread's stack). It takes about 80 s on two shared cores.
FAULTS_TIMEOUT, FAULT_TEST_TIMEOUT = 600, 300


@nox.session(python=OLDEST)
def faults(session: nox.Session) -> None:
    """The fault suite, once (``pytest -m faults``: every other session leaves it out).

    ``tests/faults``: the scenarios of ``benchmarks/_faults`` at reduced size, seeded (README,
    "Reliability"), with the newest versions of every dependency; bounded in time, and its
    figures printed in pytest's summary.
    """
    session.install(INSTALL)
    bounds = [f"--session-timeout={FAULTS_TIMEOUT}", f"--timeout={FAULT_TEST_TIMEOUT}"]
    session.run("python", "-m", "pytest", "-m", "faults", *bounds, "tests/faults", *session.posargs)


@nox.session(python=OLDEST)
def lint(session: nox.Session) -> None:
    """ruff, ruff format, mypy --strict and, where contracts are declared, import-linter."""
    session.install(INSTALL)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict", "chutes_jobs")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if "importlinter" in project.get("tool", {}):
        session.run("lint-imports")
