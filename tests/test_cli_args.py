"""``--arg NAME=text`` and ``--arg NAME:=json`` (HTTPie's convention): fuzzed, then end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cli_support import EmulatorThread, as_json, cli
from hypothesis import given, settings
from hypothesis import strategies as st

from chutes_jobs.cli._args import parse_job_arg

FUZZ = settings(max_examples=300, derandomize=True, deadline=None)

#: A name has no "=" (the first one ends it) and does not end with ":" (that would make ":=").
names = st.text(min_size=1, max_size=20).filter(lambda n: "=" not in n and not n.endswith(":"))
#: Any text, including "=", ":=", ":" and the empty string.
texts = st.text(max_size=40) | st.sampled_from(["", "=", ":=", "a=b", "[1000,", "null", "5"])
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


def is_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=lambda c: 1 / 0)
    except (ValueError, ZeroDivisionError):
        return False
    return True


@FUZZ
@given(names, texts)
def test_name_equals_text_is_always_that_text(name: str, value: str) -> None:
    assert parse_job_arg(f"{name}={value}") == (name, value)


@FUZZ
@given(names, json_values)
def test_name_colon_equals_json_is_that_value(name: str, value: Any) -> None:
    assert parse_job_arg(f"{name}:={json.dumps(value)}") == (name, value)


@FUZZ
@given(names, texts.filter(lambda t: not is_json(t)))
def test_invalid_json_after_colon_equals_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="not JSON") as caught:
        parse_job_arg(f"{name}:={value}")
    assert f"for text, write {name}=VALUE" in str(caught.value)


@FUZZ
@given(st.text(max_size=30).filter(lambda t: "=" not in t))
def test_a_pair_without_equals_is_refused(pair: str) -> None:
    with pytest.raises(ValueError, match="is not NAME=TEXT or NAME:=JSON"):
        parse_job_arg(pair)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("sizes=[1000,", ("sizes", "[1000,")),  # text, as written: never guessed as JSON
        ("n=5", ("n", "5")),
        ("n:=5", ("n", 5)),
        ("empty=", ("empty", "")),
        ("q=a=b:=c", ("q", "a=b:=c")),  # the first "=" splits
        ("a:b=c", ("a:b", "c")),
        ("a:b:=true", ("a:b", True)),
        ("a::=null", ("a:", None)),
        ("prompt=ein Bär 🐻", ("prompt", "ein Bär 🐻")),
        ('naïve:="é"', ("naïve", "é")),
    ],
)
def test_examples(pair: str, expected: tuple[str, Any]) -> None:
    assert parse_job_arg(pair) == expected


@pytest.mark.parametrize("pair", ["x:=NaN", "x:=Infinity", "x:=-Infinity", "x:=", ":=1", "=1"])
def test_not_json_or_no_name(pair: str) -> None:
    with pytest.raises(ValueError):
        parse_job_arg(pair)


# -- through the command ------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    server = EmulatorThread(host="127.0.0.1", port=0, schedule_delay=0.01)
    yield server
    server.close()


def test_text_and_json_arguments_reach_the_job(emu: EmulatorThread) -> None:
    args = ["--arg", "sizes=[1000,", "--arg", "n:=5", "--arg", "flags:={\"a\": [1, null]}",
            "--arg", "empty=", "--arg", "q=a=b", "--arg", "n2=5"]  # fmt: skip
    job = as_json(cli("submit", "demo", "echo", *args, "--json", emu=emu))
    assert job["job_args"] == {
        "sizes": "[1000,", "n": 5, "flags": {"a": [1, None]}, "empty": "", "q": "a=b", "n2": "5",
        "_disk_gb": 10,
    }  # fmt: skip


def test_bad_json_is_a_usage_error_before_anything_is_sent(emu: EmulatorThread) -> None:
    before = emu.creates()
    result = cli("submit", "demo", "echo", "--arg", "sizes:=[1000,", emu=emu)
    assert result.returncode == 2 and result.stdout == ""
    assert "'sizes:=[1000,': the value after ':=' is not JSON" in result.stderr
    assert "for text, write sizes=VALUE" in result.stderr
    assert emu.creates() == before


@pytest.mark.parametrize("command", ["submit", "run"])
def test_help_shows_both_forms(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--arg NAME=TEXT|NAME:=JSON" in text
    assert "NAME=TEXT is always a string; NAME:=JSON is a JSON value" in text
