"""The tests' private PostgreSQL server answers, and a database taken from it is empty and writable."""

from __future__ import annotations

import psycopg

from tests.postgres import PostgresServer


def test_a_fresh_database_takes_a_table_and_survives_a_restart(postgres: PostgresServer, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        connection.execute("CREATE TABLE kept (value text)")
        connection.execute("INSERT INTO kept VALUES ('here')")
    postgres.stop()
    postgres.start()
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT value FROM kept").fetchall() == [("here",)]
