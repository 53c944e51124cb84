"""``progress=True``: a bar where one can be drawn (a terminal, Jupyter with ipywidgets),
nothing elsewhere; a callable as before; anything else refused. Over the emulator, both APIs."""

from __future__ import annotations

import builtins
import hashlib
import sys
import types
from pathlib import Path

import pytest

import chutes_jobs
from chutes_jobs import ChutesSession, PollPolicy, TransferProgress
from chutes_jobs._progress_bar import progress_option
from chutes_jobs.sync import ChutesSession as SyncChutesSession

FAST_POLL = PollPolicy(initial=0.02, maximum=0.1)
SIZES = [3 << 20, 4096]


def digests(paths: dict[str, Path]) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in paths.items()}


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr counts as a terminal for rich (its TTY_COMPATIBLE convention)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.delenv("TERM", raising=False)


@pytest.fixture
def not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "0")


@pytest.mark.usefixtures("terminal")
def test_on_a_terminal_a_bar_per_file_is_drawn_on_stderr(
    chutes_sync_session: SyncChutesSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = chutes_sync_session.create_job("demo", "files", {"sizes": SIZES})
    final = handle.wait(poll=FAST_POLL)
    paths = handle.download_outputs(tmp_path, progress=True)
    assert digests(paths) == final.result["files"]
    err = capsys.readouterr().err
    assert "file_000.bin" in err and "sub/file_001.bin" in err
    assert "3.0/3.0 MiB" in err  # the finished row of the larger file


@pytest.mark.usefixtures("not_a_terminal")
async def test_elsewhere_nothing_is_drawn(
    chutes_session: ChutesSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = await chutes_session.create_job("demo", "files", {"sizes": SIZES})
    final = await handle.wait(poll=FAST_POLL)
    paths = await handle.download_outputs(tmp_path, progress=True)
    assert digests(paths) == final.result["files"]
    one = await handle.download("file_000.bin", tmp_path / "one.bin", progress=True)
    assert one.stat().st_size == SIZES[0]
    assert capsys.readouterr().err == ""


class ZMQInteractiveShell:
    """What rich takes for a Jupyter kernel."""


def test_in_jupyter_without_ipywidgets_nothing_is_drawn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(builtins, "get_ipython", ZMQInteractiveShell, raising=False)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    with progress_option(True) as callback:
        assert callback is None
    assert capsys.readouterr().err == ""


def test_in_jupyter_with_ipywidgets_a_bar_is_drawn_in_a_widget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown: list[object] = []

    class Output:  # ipywidgets.Output: rich prints into it
        def __enter__(self) -> None: ...
        def __exit__(self, *exc: object) -> None: ...
        def clear_output(self, wait: bool = False) -> None: ...

    widgets = types.ModuleType("ipywidgets")
    widgets.Output = Output  # type: ignore[attr-defined]
    display = types.ModuleType("IPython.display")
    display.display = shown.append  # type: ignore[attr-defined]
    monkeypatch.setattr(builtins, "get_ipython", ZMQInteractiveShell, raising=False)
    monkeypatch.setitem(sys.modules, "ipywidgets", widgets)
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    with progress_option(True) as callback:
        assert callback is not None
        callback(TransferProgress("a.bin", 1, 2))
    assert isinstance(shown[0], Output)  # the live widget, then what rich rendered into it
    assert any("a.bin" in getattr(rendered, "text", "") for rendered in shown[1:])


def test_without_rich_nothing_is_drawn(
    monkeypatch: pytest.MonkeyPatch, terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)
    with progress_option(True) as callback:
        assert callback is None
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("terminal")
def test_concurrent_users_share_one_display(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_option(True) as first, progress_option(True) as second:
        assert first is not None and second is not None
        first(TransferProgress("a.bin", 1 << 20, 2 << 20))
        second(TransferProgress("b.bin", 2 << 20, 2 << 20))
    err = capsys.readouterr().err
    assert "a.bin" in err and "b.bin" in err


async def test_a_callable_still_gets_every_snapshot(
    chutes_session: ChutesSession, tmp_path: Path
) -> None:
    handle = await chutes_session.create_job("demo", "files", {"sizes": SIZES})
    await handle.wait(poll=FAST_POLL)
    seen: list[TransferProgress] = []
    await handle.download_outputs(tmp_path, progress=seen.append)
    finals = {p.filename: p.done for p in seen if p.done == p.total}
    assert finals == {"file_000.bin": SIZES[0], "sub/file_001.bin": SIZES[1]}


@pytest.mark.parametrize("bad", ["yes", 1, object()])
def test_anything_else_is_refused(
    chutes_sync_session: SyncChutesSession, tmp_path: Path, bad: object
) -> None:
    handle = chutes_sync_session.create_job("demo", "files", {"sizes": [10]})
    handle.wait(poll=FAST_POLL)
    with pytest.raises(chutes_jobs.ConfigurationError, match="progress must be"):
        handle.download_outputs(tmp_path, progress=bad)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
