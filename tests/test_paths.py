"""Output filenames from the server never escape the destination folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chutes_jobs.errors import UnsafePathError
from chutes_jobs.transfer import safe_destination

SAFE = [
    ("a.bin", "a.bin"),
    ("sub/a.bin", "sub/a.bin"),
    ("deep/er/x.png", "deep/er/x.png"),
    ("_chute.log", "_chute.log"),
    ("..a", "..a"),
    ("a..", "a.."),
    ("...", "..."),
    ("with space.txt", "with space.txt"),
    ("ünïcode-名前.txt", "ünïcode-名前.txt"),
    (".hidden", ".hidden"),
    ("ab:c", "ab:c"),  # a colon after the second character is no drive letter
]

UNSAFE = [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("//server/share/x", "absolute"),
    ("../x", ".."),
    ("sub/../../x", ".."),
    ("sub/..", ".."),
    ("..", ".."),
    ("a\x00b", "NUL"),
    ("..\\x", "backslash"),
    ("sub\\..\\..\\x", "backslash"),
    ("\\\\server\\share\\x", "backslash"),
    ("C:\\Windows\\x", "backslash"),
    ("C:/Windows/x", "drive letter"),
    ("C:x", "drive letter"),
    ("c:", "drive letter"),
    ("a:b", "drive letter"),
    ("sub//a", "empty"),
    ("sub/", "empty"),
    ("./a", "'.'"),
    (".", "'.'"),
]


@pytest.mark.parametrize(("name", "relative"), SAFE)
def test_safe_names_land_under_the_destination(tmp_path: Path, name: str, relative: str) -> None:
    target = safe_destination(tmp_path, name)
    assert target == tmp_path.resolve() / relative
    assert target.is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize(("name", "reason"), UNSAFE)
def test_unsafe_names_are_refused_with_the_name_and_reason(
    tmp_path: Path, name: str, reason: str
) -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_destination(tmp_path, name)
    assert info.value.filename == name
    assert reason in info.value.reason
    assert repr(name) in str(info.value)


def test_symlinked_subfolder_escaping_the_destination_is_refused(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside"):
        safe_destination(dest, "link/a.bin")


def test_symlinked_file_escaping_the_destination_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(UnsafePathError, match="outside"):
        safe_destination(dest, "a.bin")


def test_symlink_staying_inside_the_destination_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert (
        safe_destination(tmp_path, "alias/a.bin").parent.resolve() == (tmp_path / "real").resolve()
    )


def test_destination_that_is_itself_a_symlink_works(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "dest").symlink_to(tmp_path / "real", target_is_directory=True)
    target = safe_destination(tmp_path / "dest", "sub/a.bin")
    assert target == (tmp_path / "real" / "sub" / "a.bin").resolve()


def test_relative_destination_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert safe_destination(Path("out"), "a.bin") == tmp_path.resolve() / "out" / "a.bin"
    with pytest.raises(UnsafePathError):
        safe_destination(Path("out"), "../a.bin")


def test_refusal_does_not_touch_the_disk(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        safe_destination(tmp_path, "../x")
    assert os.listdir(tmp_path) == []
