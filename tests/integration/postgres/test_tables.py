"""Reference tables from PostgreSQL, against the real server the fixtures start."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from sensorstream.errors import ConfigError, SourceError
from sensorstream.sources.tables import PostgresTableSettings, PostgresTableSource
from tests.unit.sources.tables.helpers import (
    last_error,
    next_update,
    wait_for_refreshes,
    wait_until,
)

pytestmark = pytest.mark.integration

QUERY = "SELECT user_id, low, high, updated_at FROM ranges"
FAST = timedelta(milliseconds=50)
Tables = Callable[..., PostgresTableSource]


@pytest.fixture
def ranges(postgres_db: str) -> str:
    """A database with a ``ranges`` table of three users; returns its DSN."""
    with psycopg.connect(postgres_db, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE ranges (user_id text PRIMARY KEY, low float8, high float8,"
            " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        connection.execute(
            "INSERT INTO ranges (user_id, low, high, updated_at) VALUES"
            " ('u1', 1, 10, '2024-06-01T12:00:00Z'), ('u2', 2, 20, '2024-06-01T12:00:01Z'),"
            " ('u3', 3, 30, '2024-06-01T12:00:02Z')"
        )
    return postgres_db


@pytest.fixture
def tables(ranges: str) -> Iterator[Tables]:
    """Builds sources on the ranges database (QUERY by default); closes them after the test."""
    made: list[PostgresTableSource] = []

    def make(query: str = QUERY, **options: object) -> PostgresTableSource:
        table = PostgresTableSource("ranges", ranges, query, **options)  # type: ignore[arg-type]
        made.append(table)
        return table

    yield make
    for table in made:
        table.close()


def run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statement)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_load_runs_the_query_into_a_frame(tables: Tables) -> None:
    update = tables(QUERY + " ORDER BY user_id").load()
    at = datetime(2024, 6, 1, 12, tzinfo=UTC)
    expected = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "low": [1.0, 2.0, 3.0],
            "high": [10.0, 20.0, 30.0],
            "updated_at": [at, at + timedelta(seconds=1), at + timedelta(seconds=2)],
        },
        schema_overrides={"updated_at": pl.Datetime("us", "UTC")},
    )
    assert_frame_equal(update.rows, expected)
    assert update.full
    assert update.version.startswith("rows=3 digest=")


def test_with_a_change_column_the_version_is_its_highest_value(tables: Tables) -> None:
    table = tables(change_column="updated_at", interval=timedelta(hours=1))
    assert table.load().version == "updated_at=2024-06-01T12:00:02+00:00"


def test_result_types_become_polars_types(tables: Tables) -> None:
    query = (
        "SELECT 1::int2 AS small, 2::int8 AS big, 1.25::numeric AS exact, 0.5::float4 AS single,"
        " 'a'::varchar AS word, 'b'::char(2) AS padded, true AS flag, DATE '2024-06-01' AS day,"
        " TIMESTAMP '2024-06-01 12:00' AS naive,"
        " TIMESTAMPTZ '2024-06-01 14:00+02' AS zoned,"
        " '6ecd8c99-4036-403d-bf84-cf8400f67836'::uuid AS id"
    )
    rows = tables(query).load().rows
    expected: dict[str, pl.DataType] = {
        "small": pl.Int64(),
        "big": pl.Int64(),
        "exact": pl.Float64(),
        "single": pl.Float64(),
        "word": pl.String(),
        "padded": pl.String(),
        "flag": pl.Boolean(),
        "day": pl.Date(),
        "naive": pl.Datetime("us"),
        "zoned": pl.Datetime("us", "UTC"),
        "id": pl.String(),
    }
    assert dict(rows.schema) == expected
    assert rows.row(0) == (
        1,
        2,
        1.25,
        0.5,
        "a",
        "b ",
        True,
        date(2024, 6, 1),
        datetime(2024, 6, 1, 12),  # noqa: DTZ001 - a timestamp without time zone stays naive
        datetime(2024, 6, 1, 12, tzinfo=UTC),
        "6ecd8c99-4036-403d-bf84-cf8400f67836",
    )


def test_an_empty_result_keeps_its_column_types(tables: Tables) -> None:
    rows = tables(QUERY + " WHERE false").load().rows
    assert rows.height == 0
    assert rows.schema["updated_at"] == pl.Datetime("us", "UTC")
    assert rows.schema["low"] == pl.Float64


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT '{}'::jsonb AS extra", "column 'extra' has PostgreSQL type jsonb"),
        ("SELECT ARRAY[1, 2] AS floors", "column 'floors' has PostgreSQL type int4[]"),
    ],
)
def test_a_column_a_table_cannot_hold_says_how_to_cast_it(
    tables: Tables, query: str, message: str
) -> None:
    with pytest.raises(SourceError, match="table 'ranges': ") as raised:
        tables(query).load()
    assert message in str(raised.value)
    assert "cast it in the query" in str(raised.value)


def test_a_bad_query_at_load_names_the_table_and_the_reason(tables: Tables) -> None:
    with pytest.raises(
        SourceError,
        match=r"table 'ranges': the query failed: relation \"rangez\" does not exist; "
        r"the query: SELECT \* FROM rangez",
    ):
        tables("SELECT * FROM rangez;").load()


def test_an_unreachable_server_at_load_is_a_clear_error() -> None:
    port = free_port()
    table = PostgresTableSource("ranges", f"postgresql://postgres@127.0.0.1:{port}/x", QUERY)
    started = time.monotonic()
    with pytest.raises(
        SourceError,
        match=rf"table 'ranges': cannot connect to PostgreSQL at 127\.0\.0\.1:{port}/x: "
        r".*Connection refused",
    ):
        table.load()
    assert time.monotonic() - started < 5
    table.close()


def test_a_change_column_missing_from_the_result_is_an_error(tables: Tables) -> None:
    table = tables("SELECT user_id, low FROM ranges", change_column="updated_at", interval=FAST)
    with pytest.raises(SourceError, match="change_column 'updated_at' is not a column"):
        table.load()


def test_interval_refresh_sees_an_update_as_the_whole_table(tables: Tables, ranges: str) -> None:
    table = tables(interval=FAST)
    table.load()
    wait_for_refreshes(table)
    assert table.poll() is None  # nothing changed yet
    run(ranges, "UPDATE ranges SET high = 99 WHERE user_id = 'u2'")
    update = next_update(table)
    assert update.full
    assert update.rows.sort("user_id")["high"].to_list() == [10.0, 99.0, 30.0]
    wait_for_refreshes(table)
    assert table.poll() is None


def test_change_column_refresh_gives_only_the_changed_rows(tables: Tables, ranges: str) -> None:
    table = tables(change_column="updated_at", interval=FAST)
    assert table.load().rows.height == 3
    run(
        ranges,
        "UPDATE ranges SET high = 99, updated_at = '2024-06-01T13:00:00Z' WHERE user_id = 'u2'",
    )
    update = next_update(table)
    assert not update.full
    assert update.rows.select("user_id", "high").rows() == [("u2", 99.0)]
    assert update.version == "updated_at=2024-06-01T13:00:00+00:00"
    run(ranges, "INSERT INTO ranges VALUES ('u4', 4, 40, '2024-06-01T13:00:01Z')")
    assert next_update(table).rows["user_id"].to_list() == ["u4"]
    wait_for_refreshes(table)
    assert table.poll() is None


def test_a_percent_sign_in_the_query_survives_the_incremental_wrapping(
    tables: Tables, ranges: str
) -> None:
    table = tables(QUERY + " WHERE user_id LIKE 'u%'", change_column="updated_at", interval=FAST)
    table.load()
    run(
        ranges,
        "UPDATE ranges SET low = 0, updated_at = '2024-06-02T00:00:00Z' WHERE user_id = 'u1'",
    )
    assert next_update(table).rows["user_id"].to_list() == ["u1"]
    assert last_error(table) is None


def test_a_notification_triggers_a_refresh_within_two_seconds(tables: Tables, ranges: str) -> None:
    table = tables(change_column="updated_at", listen="ranges_changed")  # no interval
    table.load()
    # Listening starts with one catch-up refresh: wait for it, so the next is the NOTIFY's.
    wait_until(lambda: table.listening and table.refresh_count >= 1, "listening")
    run(
        ranges,
        "UPDATE ranges SET high = 7, updated_at = '2024-06-03T00:00:00Z' WHERE user_id = 'u3';"
        " NOTIFY ranges_changed",
    )
    sent = time.monotonic()
    update = next_update(table, timeout_s=2.0)
    assert time.monotonic() - sent < 2.0
    assert update.rows.select("user_id", "high").rows() == [("u3", 7.0)]


def test_without_a_change_column_a_notification_reloads_the_whole_table(
    tables: Tables, ranges: str
) -> None:
    table = tables(listen="ranges_changed")
    table.load()
    wait_until(lambda: table.listening and table.refresh_count >= 1, "listening")
    assert table.poll() is None  # the catch-up refresh found nothing new
    run(ranges, "DELETE FROM ranges WHERE user_id = 'u1'; NOTIFY ranges_changed")
    update = next_update(table, timeout_s=2.0)
    assert update.full
    assert sorted(update.rows["user_id"]) == ["u2", "u3"]


def test_a_failed_refresh_keeps_the_last_content_and_records_the_error(
    tables: Tables, ranges: str
) -> None:
    table = tables(interval=FAST)
    table.load()
    run(ranges, "ALTER TABLE ranges RENAME TO ranges_moved")
    wait_until(lambda: last_error(table) is not None, "the failed refresh recorded")
    assert 'relation "ranges" does not exist' in (last_error(table) or "")
    assert table.poll() is None
    run(ranges, "ALTER TABLE ranges_moved RENAME TO ranges; DELETE FROM ranges WHERE low > 1")
    assert next_update(table).rows["user_id"].to_list() == ["u1"]
    assert last_error(table) is None


def backends(dsn: str, query: str) -> list[int]:
    """The pids of the table's connections whose last statement was ``query``."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'sensorstream table ranges' AND query = %s",
            (query,),
        ).fetchall()
    return [pid for (pid,) in rows]


def terminate(dsn: str, pids: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,)
        )


def test_a_dropped_query_connection_is_reopened(tables: Tables, ranges: str) -> None:
    table = tables(change_column="updated_at", interval=FAST)
    table.load()
    wait_for_refreshes(table)
    with psycopg.connect(ranges, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'sensorstream table ranges'"
        )
    run(
        ranges,
        "UPDATE ranges SET low = -1, updated_at = '2024-06-04T00:00:00Z' WHERE user_id = 'u1'",
    )
    assert next_update(table).rows["user_id"].to_list() == ["u1"]
    wait_for_refreshes(table)
    assert last_error(table) is None


def test_a_dropped_listening_connection_is_reopened(tables: Tables, ranges: str) -> None:
    listen = 'LISTEN "ranges_changed"'
    table = tables(change_column="updated_at", listen="ranges_changed")  # no interval
    table.load()
    wait_until(lambda: table.listening and table.refresh_count >= 1, "listening")
    first = backends(ranges, listen)
    assert len(first) == 1
    refreshed = table.refresh_count
    terminate(ranges, first)
    # Reconnected, and its catch-up refresh done: the next refresh can only be the NOTIFY's.
    wait_until(
        lambda: table.refresh_count > refreshed and backends(ranges, listen) not in ([], first),
        "listening on a new connection",
    )
    run(
        ranges,
        "UPDATE ranges SET high = 8, updated_at = '2024-06-05T00:00:00Z' WHERE user_id = 'u2';"
        " NOTIFY ranges_changed",
    )
    assert next_update(table, timeout_s=2.0).rows["user_id"].to_list() == ["u2"]


def test_settings_read_the_dsn_from_the_environment(
    ranges: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = PostgresTableSettings.model_validate(
        {"type": "postgres", "dsn_env": "RANGES_DSN", "query": QUERY}
    )
    monkeypatch.delenv("RANGES_DSN", raising=False)
    with pytest.raises(
        ConfigError, match=r"tables\.ranges\.source\.dsn_env: .* RANGES_DSN is not set"
    ):
        settings.build("ranges")
    monkeypatch.setenv("RANGES_DSN", ranges)
    table = settings.build("ranges")
    assert table.load().rows.height == 3
    table.close()
