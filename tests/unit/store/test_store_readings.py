"""The view ``readings`` over the segments, and stores from before segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from sensorstream.readings import TS_TYPE, ReadingFormat
from sensorstream.sinks import DuckDBSink
from sensorstream.sinks.base import PipelineInfo, SinkBatch
from sensorstream.sinks.legacy_readings import migrate_readings_table
from sensorstream.sinks.segments import pipeline_folder
from sensorstream.store import Store, scan_readings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
COLD = ReadingFormat(measurements={"temperature": "float"})
DOORS = ReadingFormat(measurements={"openings": "int"}, tags=["eventType"])


def _store(path: Path, name: str, reading_format: ReadingFormat, rows: pl.DataFrame) -> None:
    sink = DuckDBSink(path)
    sink.open(PipelineInfo(name, (), reading_format.canonical_schema()))
    sink.write(SinkBatch(0, 1, readings=rows))
    sink.close()


def _cold(*values: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": [f"c{i}" for i in range(len(values))],
            "ts": [T0 + timedelta(seconds=i) for i in range(len(values))],
            "temperature": list(values),
        },
        schema=COLD.canonical_schema(),
    )


def _doors() -> pl.DataFrame:
    return pl.DataFrame(
        {"device_id": ["d"], "ts": [T0], "openings": [3], "eventType": ["open"]},
        schema=DOORS.canonical_schema(),
    )


def test_pipelines_with_different_columns_share_the_view_by_name(tmp_store: Path) -> None:
    _store(tmp_store, "cold chain", COLD, _cold(4.0, 5.0))
    _store(tmp_store, "doors", DOORS, _doors())
    with Store(tmp_store) as store:
        rows = store.sql(
            "SELECT pipeline, device_id, temperature, openings, eventType FROM readings "
            "ORDER BY pipeline, device_id"
        ).rows()
        assert rows == [
            ("cold chain", "c0", 4.0, None, None),
            ("cold chain", "c1", 5.0, None, None),
            ("doors", "d", None, 3, "open"),
        ]
        assert store.counts("cold chain").readings == 2
        ts = store.sql("SELECT ts FROM readings WHERE pipeline = 'doors'")["ts"]
        assert ts.dtype == TS_TYPE
    assert scan_readings(tmp_store).collect().height == 3


def test_a_store_without_segments_has_an_empty_view_with_the_reading_columns(
    tmp_store: Path,
) -> None:
    sink = DuckDBSink(tmp_store)
    sink.open(PipelineInfo("cold", (), COLD.canonical_schema()))
    sink.close()
    with Store(tmp_store) as store:
        frame = store.sql("SELECT * FROM readings")
        assert frame.columns == ["pipeline", "partition", "position", "device_id", "ts",
                                 "temperature"]  # fmt: skip
        assert frame.height == 0
        assert store.counts("cold").readings == 0


def _old_layout(path: Path) -> None:
    """A store as sensorstream wrote it before segments: a readings table."""
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE TABLE pipelines (pipeline VARCHAR PRIMARY KEY, reading_columns VARCHAR[], "
            "stores_readings BOOLEAN)"
        )
        con.execute(
            "INSERT INTO pipelines VALUES ('doors', ['device_id', 'ts', 'openings', "
            "'eventType'], true), ('it''s cold', ['device_id', 'ts', 'temperature'], true)"
        )
        con.execute(
            "CREATE TABLE readings (pipeline VARCHAR, partition INTEGER, position BIGINT, "
            "device_id VARCHAR, ts TIMESTAMPTZ, openings BIGINT, eventType VARCHAR, "
            "temperature DOUBLE)"
        )
        con.execute(
            "INSERT INTO readings VALUES "
            "('doors', 0, 5, 'd', '2024-01-01 00:00:00+00', 3, 'open', NULL), "
            "('it''s cold', 0, 7, 'c0', '2024-01-01 00:00:00+00', NULL, NULL, 4.0), "
            "('it''s cold', 0, 9, 'c1', '2024-01-01 00:00:01+00', NULL, NULL, 5.0), "
            "('it''s cold', 1, 2, 'c2', '2024-01-01 00:00:02+00', NULL, NULL, 6.0)"
        )


QUERY = (
    "SELECT pipeline, partition, position, device_id, ts, temperature, openings, eventType "
    "FROM readings ORDER BY ALL"
)


def test_a_store_from_before_segments_is_read_then_moved_into_segments(
    tmp_store: Path,
) -> None:
    _old_layout(tmp_store)
    with Store(tmp_store) as store:  # read-only: its readings table is read where it is
        before = store.sql(QUERY)
    assert before.height == 4

    _store(tmp_store, "doors", DOORS, _doors().with_columns(pl.lit("shut").alias("eventType")))
    with duckdb.connect(str(tmp_store), read_only=True) as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert "readings" not in tables
    names = sorted(p.name for p in pipeline_folder(tmp_store, "it's cold").iterdir())
    assert names == ["part-0-7-9-0.parquet", "part-1-2-2-0.parquet"]
    with Store(tmp_store) as store:
        after = store.sql(QUERY)
    new_row = after.filter(pl.col("eventType") == "shut")
    assert new_row.select("pipeline", "position").rows() == [("doors", 1)]
    assert after.filter(pl.col("eventType").ne_missing("shut")).equals(before)
    assert "eventType" in scan_readings(tmp_store, "doors").collect_schema().names()


def test_a_move_interrupted_before_the_table_is_dropped_is_done_again_without_duplicates(
    tmp_store: Path,
) -> None:
    _old_layout(tmp_store)
    with duckdb.connect(str(tmp_store)) as con:
        con.begin()
        assert migrate_readings_table(con, tmp_store)
        con.rollback()  # killed before the commit: the segments are there, the table too
    assert scan_readings(tmp_store).collect().height == 4
    with Store(tmp_store) as store:  # the view shows both until a sink moves them
        assert store.sql("SELECT count(*) AS n FROM readings")["n"].item() == 8

    sink = DuckDBSink(tmp_store)
    sink.open(PipelineInfo("doors", (), DOORS.canonical_schema()))
    sink.restore({0: 5})
    sink.close()
    with Store(tmp_store) as store:
        assert store.sql("SELECT count(*) AS n FROM readings")["n"].item() == 4


@pytest.mark.parametrize("pipeline", [None, "doors"])
def test_scan_readings_of_a_store_with_no_segments_is_empty(
    tmp_path: Path, pipeline: str | None
) -> None:
    frame = scan_readings(tmp_path / "nothing.duckdb", pipeline).collect()
    assert frame.columns == ["pipeline", "partition", "position"]
    assert frame.height == 0
