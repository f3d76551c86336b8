"""Heartwatch with its historical ranges in a real PostgreSQL, as in the document."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg
import pytest

from sensorstream.errors import ConfigError
from sensorstream.scenarios.tables import load_postgres
from sensorstream.sources.feeds.heartwatch import historical_ranges
from sensorstream.sources.tables import PostgresTableSettings
from tests.e2e.scenarios.heartwatch_reference import (
    COLLAPSED,
    USERS,
    reference_transitions,
    reports,
    run,
    spec_in,
    transitions,
)

pytestmark = pytest.mark.integration


def stored(dsn: str) -> pl.DataFrame:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT user_id, min_heart_rate, max_heart_rate FROM historical ORDER BY user_id"
        ).fetchall()
    return pl.DataFrame(rows, schema=historical_ranges(1, 0).schema, orient="row")


def test_the_scenario_loads_its_ranges_into_postgres_and_alerts_from_there(
    tmp_path: Path, postgres_db: str
) -> None:
    spec = spec_in(tmp_path, COLLAPSED, tables_at=postgres_db)
    source = spec.tables["historical"].source
    assert isinstance(source, PostgresTableSettings)
    assert source.query == 'SELECT "user_id", "min_heart_rate", "max_heart_rate" FROM "historical"'
    assert stored(postgres_db).equals(historical_ranges(USERS, seed=0).sort("user_id"))
    assert not (tmp_path / "historical.parquet").exists(), "no file when PostgreSQL holds it"
    db = run(tmp_path, COLLAPSED, tables_at=postgres_db)
    assert transitions(db) == reference_transitions(reports(COLLAPSED))
    assert {user for user, _, _ in transitions(db)} == set(COLLAPSED)


def test_loading_again_changes_nothing_and_a_changed_table_is_reset(postgres_db: str) -> None:
    rows = historical_ranges(500, seed=3)
    assert load_postgres(postgres_db, "historical", rows, key=["user_id"]) is True
    assert load_postgres(postgres_db, "historical", rows, key=["user_id"]) is False
    with psycopg.connect(postgres_db) as connection:
        connection.execute("UPDATE historical SET max_heart_rate = 150 WHERE user_id = '7'")
    assert load_postgres(postgres_db, "historical", rows, key=["user_id"]) is True
    assert stored(postgres_db).equals(rows.sort("user_id"))


def test_a_change_to_the_table_is_notified_to_its_listeners(postgres_db: str) -> None:
    load_postgres(postgres_db, "historical", historical_ranges(10, seed=0), key=["user_id"])
    with psycopg.connect(postgres_db, autocommit=True) as listener:
        listener.execute("LISTEN historical_changed")
        with psycopg.connect(postgres_db) as writer:
            writer.execute("UPDATE historical SET min_heart_rate = 50 WHERE user_id = '3'")
        heard = [note.channel for note in listener.notifies(timeout=5, stop_after=1)]
    assert heard == ["historical_changed"]


def test_a_table_of_other_columns_is_refused_not_dropped(postgres_db: str) -> None:
    with psycopg.connect(postgres_db) as connection:
        connection.execute("CREATE TABLE historical (user_id serial PRIMARY KEY, low integer)")
        connection.execute("INSERT INTO historical (low) VALUES (60)")
    with pytest.raises(ConfigError, match=r"has the columns \['user_id', 'low'\]"):
        load_postgres(postgres_db, "historical", historical_ranges(5, 0), key=["user_id"])
    with psycopg.connect(postgres_db) as connection:
        assert connection.execute("SELECT count(*) FROM historical").fetchone() == (1,)


def test_an_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="cannot load table 'historical' into PostgreSQL"):
        load_postgres(
            "postgresql://nobody@127.0.0.1:9/none",
            "historical",
            historical_ranges(2, 0),
            key=["user_id"],
        )
