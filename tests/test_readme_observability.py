"""The README's Observability example runs as written (against the embedded emulator)."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chutes_jobs import instrumentation as ins

README = Path(__file__).resolve().parent.parent / "README.md"


def section_blocks(title: str) -> list[str]:
    """The ```python blocks of the README section whose heading starts with ``title``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.DOTALL)


@pytest.fixture(autouse=True)
def process_hooks() -> Iterator[None]:
    before = ins.get_hooks()
    yield
    ins.clear_hooks()
    for hook in before:
        ins.add_hook(hook)


async def test_the_observability_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = section_blocks("Observability")
    assert blocks
    namespace: dict[str, Any] = {"__name__": "readme"}
    for block in blocks:
        code = compile(block, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result
    assert "retrying a create call in 0.01 s" in capsys.readouterr().out
    assert not any(type(h).__name__ == "OpenTelemetryHook" for h in ins.get_hooks())
