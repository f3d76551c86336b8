"""The throwaway PostgreSQL of scripts/postgres.sh, as the fixtures in tests/conftest.py use it."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import postgres_script

pytestmark = pytest.mark.integration


def test_the_fixture_gives_a_dsn_that_answers_select_1(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as connection:
        assert connection.execute("select 1").fetchone() == (1,)


def test_the_server_listens_on_loopback_only(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as connection:
        row = connection.execute("show listen_addresses").fetchone()
    assert row == ("127.0.0.1",)


def test_a_second_start_keeps_the_running_server_and_prints_the_same_dsn(
    postgres_dsn: str,
) -> None:
    with psycopg.connect(postgres_dsn) as connection:
        started_at = connection.execute("select pg_postmaster_start_time()").fetchone()
    again = postgres_script("start")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == postgres_dsn
    assert "already running" in again.stderr
    with psycopg.connect(postgres_dsn) as connection:
        assert connection.execute("select pg_postmaster_start_time()").fetchone() == started_at


def test_status_and_dsn_agree_with_the_fixture(postgres_dsn: str) -> None:
    status = postgres_script("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == postgres_dsn
    assert postgres_script("dsn").stdout.strip() == postgres_dsn


def test_each_test_database_is_new_and_empty(postgres_db: str, postgres_dsn: str) -> None:
    assert postgres_db != postgres_dsn
    with psycopg.connect(postgres_db) as connection:
        name, tables = connection.execute(
            "select current_database(), (select count(*) from pg_tables"
            " where schemaname = 'public')"
        ).fetchone() or (None, None)
    assert name is not None
    assert name.startswith("test_")
    assert tables == 0
