"""The fault suite's own instruments catch what they are meant to catch: a suite whose probes
were blind would report zeros whatever the client did."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from benchmarks._faults.probes import (
    FinalNameWatcher,
    open_descriptors,
    settled_descriptors,
    tree_changes,
    tree_state,
)
from benchmarks._faults.report import Sweep
from chutes_jobs.emulator.store import new_api_key, new_oauth_token

pytestmark = pytest.mark.faults

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqb2IifQ.c2lnbmF0dXJl"


def test_the_sweep_finds_each_kind_of_secret_and_not_a_masked_one() -> None:
    sweep = Sweep()
    seed = "0x" + "ab" * 32
    sweep.secret(seed, "hotkey seed")
    unprotected = logging.getLogger("chutes_jobs.selftest")  # no redacting filter of its own
    with sweep.capture():
        unprotected.warning("key %s", new_api_key("6f1c3f5e-6a4b-4c1d-9a57-0f1b2c3d4e5f"))
        logging.getLogger("chutes_jobs").info("masked: cpk_*** token=*** %s", "***")
    error = RuntimeError("upload failed")
    error.add_note(f"url: http://127.0.0.1/jobs/x?token={JWT}")
    sweep.exception(error)
    sweep.exception(ExceptionGroup("two", [ValueError(new_oauth_token())]))
    sweep.reprs([f"Session(seed={seed[2:]})"])
    assert sweep.checked == {"log records": 2, "exceptions": 2, "reprs": 1}
    found = {leak.split(" in ")[0] for leak in sweep.leaks}
    assert found == {"API key", "OAuth token", "hotkey seed", "worker token (JWT)", "token= value"}
    assert not any(seed[2:] in leak or JWT in leak for leak in sweep.leaks)  # masked in reports


def test_the_watcher_sees_a_file_growing_under_its_final_name(tmp_path: Path) -> None:
    with FinalNameWatcher(tmp_path, lambda _: 4096) as watcher:
        with (tmp_path / "out.bin").open("wb") as fh:
            fh.write(b"x" * 1024)
            fh.flush()
            time.sleep(0.05)
            fh.write(b"x" * 3072)
        (tmp_path / "out.bin.part").write_bytes(b"x")  # a partial's size makes no claim,
        (tmp_path / "out.bin.part.json").write_bytes(b"{}")  # nor its record's
        time.sleep(0.05)
    assert watcher.incomplete
    assert all(line.startswith("out.bin held 1024 of 4096") for line in watcher.incomplete)


def test_tree_changes_show_a_write_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    sentinel = tmp_path / "outside" / "sentinel"
    sentinel.write_text("before")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x.part").symlink_to(sentinel)
    before = tree_state(tmp_path, skip=dest)
    time.sleep(0.01)
    (dest / "x.part").write_text("after!")  # follows the link
    assert tree_changes(before, tree_state(tmp_path, skip=dest)) == ["outside/sentinel changed"]


async def test_a_descriptor_left_open_is_reported_and_a_closed_one_is_not(tmp_path: Path) -> None:
    baseline = open_descriptors()
    fd = os.open(tmp_path / "kept", os.O_CREAT | os.O_WRONLY)
    closed_soon = os.open(tmp_path / "closed", os.O_CREAT | os.O_WRONLY)
    threading.Timer(0.1, os.close, [closed_soon]).start()
    try:
        assert await settled_descriptors(baseline, within=0.5) == [str(tmp_path / "kept")]
    finally:
        os.close(fd)
