"""The SQLite ledger's writer process: where it runs, how it ends, what it refuses.

Both writers pass the whole ledger suite (``test_ledger.py``, ``test_ledger_backends.py``);
these tests cover what only a second process can get wrong: signals, either side dying,
values its pipe cannot carry, the loop it is bound to, and where it cannot start.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chutes_jobs.bulk.ledger import Ledger, LedgerError, LedgerState

S = LedgerState


def writers_of(parent: int) -> list[int]:
    """The pids of the ledger writer processes whose parent is ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"sqlite_core.py" in cmdline:
            found.append(int(entry))
    return found


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def gone_within(pid: int, seconds: float) -> bool:
    """Whether ``pid`` has exited (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "run.db"


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


async def test_the_ledger_is_held_by_a_writer_process_in_a_session_of_its_own(
    db_path: Path,
) -> None:
    async with await Ledger.open(db_path) as ledger:
        assert ledger.writer == "process"  # type: ignore[attr-defined]
        [writer] = writers_of(os.getpid())
        assert session_of(writer) != session_of(os.getpid())  # Ctrl-C reaches only us
        await ledger.mark_creating("a", 0)
    assert gone_within(writer, 10)


INTERRUPTED = textwrap.dedent(
    """
    import asyncio, sys
    from chutes_jobs.bulk.ledger import Ledger

    async def main():
        async with await Ledger.open(sys.argv[1]) as ledger:
            await asyncio.gather(*(ledger.mark_creating(f"k{i}", i) for i in range(100)))
            print("marked", flush=True)
            await asyncio.sleep(3600)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


def test_ctrl_c_in_the_terminal_reaches_the_caller_which_closes_the_ledger(
    db_path: Path,
) -> None:
    """SIGINT to the whole foreground group (what a terminal's Ctrl-C does): the writer is
    not in it, the caller's ``async with`` closes the ledger, and the writer then exits."""
    with subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own to signal, like a terminal's job
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "marked\n"
            [writer] = writers_of(child.pid)
            os.killpg(child.pid, signal.SIGINT)
            assert child.stdout.readline() == "interrupted\n"
            assert child.wait(30) == 0
        finally:
            child.kill()
    assert gone_within(writer, 10)
    assert _counts(db_path)[S.CREATING] == 100


def _counts(db_path: Path) -> dict[LedgerState, int]:
    async def read() -> dict[LedgerState, int]:
        async with await Ledger.open(db_path, create=False) as ledger:
            return await ledger.counts()

    return asyncio.run(read())


KILLED = textwrap.dedent(
    """
    import asyncio, sys
    from chutes_jobs.bulk.ledger import Ledger

    async def main():
        ledger = await Ledger.open(sys.argv[1])
        await ledger.mark_creating("acknowledged", 0)
        for i in range(2000):  # queued, never awaited: killed while they are applied
            asyncio.ensure_future(ledger.mark_creating(f"k{i}", i + 1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        print("queued", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_when_the_caller_is_killed_the_writer_applies_what_it_read_and_exits(
    db_path: Path,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", KILLED, str(db_path)], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "queued\n"
            [writer] = writers_of(child.pid)
        finally:
            child.kill()
    assert gone_within(writer, 30)  # no orphan holding the file
    counts = _counts(db_path)  # and the file is free again
    assert counts[S.CREATING] >= 1  # at least the acknowledged mark
    assert sum(counts.values()) == counts[S.CREATING]  # nothing half-written


async def test_a_writer_that_dies_fails_every_call_and_close_still_returns(
    db_path: Path,
) -> None:
    ledger = await Ledger.open(db_path)
    await ledger.mark_creating("a", 0)
    [writer] = writers_of(os.getpid())
    os.kill(writer, signal.SIGKILL)
    for call in (ledger.mark_submitted("a", "job-1"), ledger.get("a"), ledger.counts()):
        with pytest.raises(LedgerError, match="writer process exited"):
            await asyncio.wait_for(call, 60)  # a hang guard, not a timing claim
    await asyncio.wait_for(ledger.close(), 60)
    async with await Ledger.open(db_path) as reopened:
        assert (await reopened.get("a")).state is S.CREATING  # type: ignore[union-attr]


class Outcome(enum.StrEnum):
    DONE = "done"


async def test_values_the_pipe_cannot_carry_fail_only_their_caller(db_path: Path) -> None:
    async with await Ledger.open(db_path) as ledger:
        for key in "abc":
            await ledger.mark_creating(key, 0)
            await ledger.mark_submitted(key, f"job-{key}")
        results = await asyncio.gather(
            ledger.mark_finished("a", outcome=Outcome.DONE, failed=False),  # stored as "done"
            ledger.mark_finished("b", outcome=object(), failed=False),  # type: ignore[arg-type]
            ledger.mark_finished("c", outcome="done", failed=False),
            ledger.get_many([1, "a"]),  # type: ignore[list-item]
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], LedgerError) and "outcome" in str(results[1])
        assert isinstance(results[3], LedgerError) and "a key is text" in str(results[3])
        found = await ledger.get_many(["a", "b", "c"])
        assert [found[k].outcome for k in "abc"] == ["done", None, "done"]
        assert type(found["a"].outcome) is str


def test_a_process_writer_refuses_another_event_loop_by_name(db_path: Path) -> None:
    opener = asyncio.new_event_loop()
    other = asyncio.new_event_loop()
    try:
        ledger = opener.run_until_complete(Ledger.open(db_path))
        with pytest.raises(LedgerError, match="another event loop"):
            other.run_until_complete(ledger.get("a"))
        opener.run_until_complete(ledger.close())
    finally:
        opener.close()
        other.close()


@pytest.mark.parametrize("option", [{"writer": "fork"}, {"writer": None}])
async def test_an_unknown_writer_is_refused_by_name(
    tmp_path: Path, option: dict[str, object]
) -> None:
    with pytest.raises(LedgerError, match="writer="):
        await Ledger.open(tmp_path / "run.db", **option)
    assert os.listdir(tmp_path) == []


async def test_writer_is_refused_for_a_postgresql_ledger() -> None:
    with pytest.raises(LedgerError, match="writer applies only to SQLite ledgers"):
        await Ledger.open("postgresql://u:secret@127.0.0.1:1/db", writer="thread")


async def test_where_the_executable_is_no_python_the_thread_writer_is_taken(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = tmp_path / "uwsgi"  # an application embedding Python names itself here
    host.write_text("#!/bin/sh\necho should not run >&2\nexit 9\n")
    host.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(host))
    async with await Ledger.open(db_path) as ledger:
        assert ledger.writer == "thread"  # type: ignore[attr-defined]
        await ledger.mark_creating("a", 0)
        assert writers_of(os.getpid()) == []


async def test_a_writer_that_cannot_start_is_a_ledger_error(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "python3-broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    with pytest.raises(LedgerError, match=r"writer process exited \(status 3\)"):
        await asyncio.wait_for(Ledger.open(db_path), 60)
    missing = tmp_path / "python3-missing"
    monkeypatch.setattr(sys, "executable", str(missing))
    with pytest.raises(LedgerError, match=r"cannot start the writer process.*writer='thread'"):
        await Ledger.open(db_path)


# Big frames both ways: each get_many's keys and answer are larger than a pipe's 64 KiB, and
# they are sent in four loop iterations. The loop must never block writing to the writer
# while the writer is blocked writing an answer the loop is not reading (found in review: the
# writer's stdin was a blocking pipe).
_BIG_FRAMES = textwrap.dedent(
    """
    import asyncio, sys
    from chutes_jobs.bulk.ledger import Ledger

    async def main():
        keys = [f"key-{i:08d}-" + "x" * 40 for i in range(2000)]
        async with await Ledger.open(sys.argv[1]) as ledger:
            await asyncio.gather(*[ledger.mark_creating(k, i) for i, k in enumerate(keys)])

            async def read(after: int) -> int:
                for _ in range(after):
                    await asyncio.sleep(0)
                return len(await ledger.get_many(keys))

            print(await asyncio.gather(*[read(n) for n in range(4)]), flush=True)

    asyncio.run(main())
    """
)


def test_big_frames_both_ways_do_not_deadlock_the_event_loop(tmp_path: Path) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _BIG_FRAMES, str(tmp_path / "run.db")],
            capture_output=True,
            text=True,
            timeout=120,  # a hang guard, not a timing claim
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the ledger's caller hung: its event loop blocked writing to the writer")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2000, 2000, 2000, 2000]"


ZOMBIES = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from chutes_jobs.bulk.ledger import Ledger

    async def cancelled_open(path):
        opening = asyncio.ensure_future(Ledger.open(path))
        await asyncio.sleep(0)
        opening.cancel()

    for i in range(5):  # each asyncio.run ends with the writer still opening
        asyncio.run(cancelled_open(os.path.join(sys.argv[1], f"{i}.db")))
    print(os.getpid(), flush=True)
    time.sleep(60)
    """
)


def test_opens_cancelled_as_their_loop_ends_leave_no_process_behind(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", ZOMBIES, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            parent = int(child.stdout.readline())
            deadline = time.monotonic() + 60  # a hang guard, not a timing claim
            while _children(parent) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _children(parent) == []  # neither running nor a zombie
        finally:
            child.kill()


def _children(parent: int) -> list[str]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(f"{entry} {fields[0]}")
    return found


def test_close_on_another_event_loop_still_closes_the_ledger(db_path: Path) -> None:
    async def opened() -> Ledger:
        ledger = await Ledger.open(db_path)
        await ledger.mark_creating("a", 0)
        return ledger

    ledger = asyncio.run(opened())  # its loop is closed when asyncio.run returns
    asyncio.run(asyncio.wait_for(ledger.close(), 60))  # a hang guard, not a timing claim
    assert _counts(db_path)[S.CREATING] == 1


def _linger(seconds: float) -> None:
    time.sleep(seconds)


# Forking a process that has threads (the writer's reaper) is what this test is about.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
async def test_a_forked_child_does_not_keep_the_writer_from_closing(db_path: Path) -> None:
    """A child forked while the ledger is open (a ``multiprocessing`` pool) holds no copy of
    the writer's pipe: closing the ledger ends the writer while the child still runs."""
    import multiprocessing

    ledger = await Ledger.open(db_path)
    await ledger.mark_creating("a", 0)
    [writer] = writers_of(os.getpid())
    child = multiprocessing.get_context("fork").Process(target=_linger, args=(120,))
    child.start()
    try:
        await asyncio.wait_for(ledger.close(), 60)  # a hang guard, not a timing claim
        assert child.is_alive()
        assert gone_within(writer, 30)
    finally:
        child.kill()
        child.join()


# -- found in the second review


def test_close_on_another_loop_returns_when_answers_filled_the_pipe(db_path: Path) -> None:
    """The ledger's first loop ended with a big answer on its way (a job-book read whose task
    asyncio.run cancelled): nobody reads the writer's output any more, so the writer blocks
    writing it and never sees its input end. close() on a second loop must still return."""

    async def first() -> tuple[Ledger, asyncio.Future[object]]:
        ledger = await Ledger.open(db_path)
        await asyncio.gather(
            *[ledger.mark_creating(f"k{i:04d}" + "p" * 2000, i) for i in range(300)]
        )
        [writer] = writers_of(os.getpid())
        os.kill(writer, signal.SIGSTOP)  # the answer is written only once this loop has ended
        reading = asyncio.ensure_future(ledger.entries())  # ~600 KB: more than a pipe holds
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return ledger, reading

    ledger, _ = asyncio.run(first())
    [writer] = writers_of(os.getpid())
    os.kill(writer, signal.SIGCONT)
    try:
        asyncio.run(asyncio.wait_for(ledger.close(), 60))  # a hang guard, not a timing claim
    except TimeoutError:
        pytest.fail("close() on another event loop hung: the writer is blocked on its output")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(writer, signal.SIGKILL)
    assert _counts(db_path)[S.CREATING] == 300


@pytest.mark.parametrize("locked", [False, True], ids=["opened", "in-use"])
def test_a_writer_whose_caller_is_gone_prints_nothing(tmp_path: Path, locked: bool) -> None:
    """The caller dies (Ctrl-C, a kill) while the writer is opening the file: the writer's
    answer meets a closed pipe. It must exit quietly, not print a BrokenPipeError traceback
    on the terminal it inherited (after the caller's shell prompt is back)."""
    from chutes_jobs.bulk.ledger import sqlite_core
    from chutes_jobs.bulk.ledger.sqlite_writes import STATEMENTS

    path = str(tmp_path / "run.db")
    holder = None
    if locked:  # the open waits for SQLite's lock, then fails: the case with the longest window
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    try:
        with subprocess.Popen(
            [sys.executable, "-I", "-S", sqlite_core.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as writer:
            assert writer.stdin and writer.stdout and writer.stderr
            writer.stdout.close()  # the caller is gone: nobody will read the answer
            states = [s.value for s in LedgerState]
            writer.stdin.write(sqlite_core.frame((path, True, states, STATEMENTS, 1024)))
            writer.stdin.close()
            stderr = writer.stderr.read()  # until the writer exits
            writer.wait(60)  # a hang guard, not a timing claim
    finally:
        if holder is not None:
            holder.close()
    assert stderr.decode() == ""
