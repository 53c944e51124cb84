"""README.md's python blocks run as tests (pytest-markdown-docs, ``--markdown-docs`` in
pyproject.toml): each in a fresh empty folder, with no ``CHUTES_*`` settings from the caller's
environment, so they touch nothing but 127.0.0.1 and leave no files behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _readme_block_sandbox(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("markdown-docs") is None:
        return
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CHUTES_")]:
        monkeypatch.delenv(name)
