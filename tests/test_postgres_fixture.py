"""The ``postgres_url`` fixture: a real server, and a fresh database for every test."""

from __future__ import annotations

import psycopg
from _postgres import fresh_database, with_database


def test_a_test_database_answers_and_starts_empty(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
        assert name.startswith("chutes_test_")
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE left_behind (x int)")  # the next test must not see it


def test_the_next_test_gets_another_empty_database(postgres_url: str) -> None:
    test_a_test_database_answers_and_starts_empty(postgres_url)


def test_a_fresh_database_is_dropped_afterwards(postgres_server: str) -> None:
    def exists(name: str) -> bool:
        with psycopg.connect(postgres_server) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return found.fetchone() is not None

    with fresh_database(postgres_server) as url, psycopg.connect(url) as held_open:
        name = url.rsplit("/", 1)[1]
        assert exists(name)
        held_open.execute("SELECT 1")  # a connection still open does not stop the drop
    assert not exists(name)


def test_with_database_swaps_only_the_database() -> None:
    url = "postgresql://postgres@127.0.0.1:5433/postgres?sslmode=disable"
    assert (
        with_database(url, "other") == "postgresql://postgres@127.0.0.1:5433/other?sslmode=disable"
    )
