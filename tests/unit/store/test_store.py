from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from sensorstream.errors import StoreError
from sensorstream.readings import TS_TYPE, ReadingFormat, dead_letters
from sensorstream.sinks import DuckDBSink
from sensorstream.sinks.base import PipelineInfo, SinkBatch, StepInfo
from sensorstream.store import Store, StoreCounts
from sensorstream.testing import duckdb_held_elsewhere

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"}, tags=["site"])
FLEET = PipelineInfo(
    "fleet",
    (
        StepInfo("per_device", ("device_id",), ("temperature_mean",)),
        StepInfo("per site", ("site",), ("temperature_max",)),
    ),
    FORMAT.canonical_schema(),
)


def _windows(key: str, values: list[str | None], minutes: list[int], output: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            key: values,
            "window_start": [T0 + timedelta(minutes=m) for m in minutes],
            "window_end": [T0 + timedelta(minutes=m + 1) for m in minutes],
            output: [float(m) for m in minutes],
            "revision": [0] * len(values),
            "final": [True] * len(values),
            "_op": ["upsert"] * len(values),
        },
        schema_overrides={"window_start": TS_TYPE, "window_end": TS_TYPE},
    )


def _readings(device: str, minute: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": [device],
            "ts": [T0 + timedelta(minutes=minute)],
            "temperature": [20.0],
            "site": ["north"],
        },
        schema=FORMAT.canonical_schema(),
    )


def _dead(raw: str, arrived_at: datetime) -> pl.DataFrame:
    return dead_letters([raw.encode()], ["invalid_json"], ["bad"], ["line 1 of x"], arrived_at)


@pytest.fixture
def written(tmp_store: Path) -> Path:
    """A store holding pipeline ``fleet`` (two steps) and pipeline ``other``."""
    sink = DuckDBSink(tmp_store, clock=lambda: NOW)
    sink.open(FLEET)
    for minute in range(4):
        per_device = _windows("device_id", ["a", "b", None], [minute] * 3, "temperature_mean")
        late = _readings(f"late{minute}", minute).with_columns(
            late_for=pl.lit("per_device" if minute % 2 else "per_device,per site")
        )
        sink.write(
            SinkBatch(
                0,
                minute,
                readings=_readings("a", minute),
                dead_letters=_dead(f"raw{minute}", NOW + timedelta(seconds=minute)),
                late=late,
                results={
                    "per_device": per_device,
                    "per site": _windows("site", ["north"], [minute], "temperature_max"),
                },
            )
        )
    sink.close()
    other = DuckDBSink(tmp_store, store_readings=False, clock=lambda: NOW)
    other.open(PipelineInfo("other", (), FORMAT.canonical_schema()))
    other.close()
    return tmp_store


@pytest.fixture
def store(written: Path) -> Iterator[Store]:
    with Store(written) as opened:
        yield opened


def test_pipelines_lists_each_step_with_its_table_key_and_outputs(store: Store) -> None:
    assert store.pipelines().rows() == [
        ("fleet", "per site", "results_fleet_per_site", ["site"], ["temperature_max"], True),
        ("fleet", "per_device", "results_fleet_per_device", ["device_id"], ["temperature_mean"],
         True),
        ("other", None, None, None, None, False),
    ]  # fmt: skip
    assert store.pipeline("fleet").step("per site").table == "results_fleet_per_site"


def test_results_of_one_step_are_the_latest_windows_oldest_first(store: Store) -> None:
    frame = store.results("fleet", "per_device", limit=4)
    assert frame.columns == [
        "device_id", "window_start", "window_end", "temperature_mean", "revision", "final",
        "partition", "updated_at",
    ]  # fmt: skip
    assert frame.select("device_id", "temperature_mean").rows() == [
        (None, 2.0),  # the last of minute 2, in (window_start, key) order with nulls last
        ("a", 3.0),
        ("b", 3.0),
        (None, 3.0),
    ]
    assert frame["updated_at"].dtype == TS_TYPE
    assert frame["updated_at"].unique().to_list() == [NOW]


def test_results_filter_by_key_and_time(store: Store) -> None:
    frame = store.results(
        "fleet",
        "per_device",
        key={"device_id": "b"},
        since=T0 + timedelta(minutes=1),
        until=T0 + timedelta(minutes=3),
    )
    assert frame.select("device_id", "temperature_mean").rows() == [("b", 1.0), ("b", 2.0)]
    null_key = store.results("fleet", "per_device", key={"device_id": None}, limit=None)
    assert null_key["temperature_mean"].to_list() == [0.0, 1.0, 2.0, 3.0]


def test_results_of_every_step_carry_a_step_column(store: Store) -> None:
    frame = store.results("fleet", since=T0 + timedelta(minutes=3))
    assert frame.columns[:3] == ["step", "site", "device_id"]
    assert frame.select("step", "site", "device_id").rows() == [
        ("per site", "north", None),  # ordered by window, then step, then keys
        ("per_device", None, "a"),
        ("per_device", None, "b"),
        ("per_device", None, None),
    ]
    assert {"temperature_max", "temperature_mean"} <= set(frame.columns)


def test_results_before_any_window_closed_are_an_empty_frame(tmp_store: Path) -> None:
    sink = DuckDBSink(tmp_store)
    sink.open(FLEET)
    sink.close()
    with Store(tmp_store) as store:
        frame = store.results("fleet", "per_device")
    assert frame.height == 0
    assert frame.columns[:3] == ["device_id", "window_start", "window_end"]


def test_dead_letters_are_the_latest_by_arrival(store: Store) -> None:
    frame = store.dead_letters("fleet", limit=2)
    assert frame.columns == [
        "partition",
        "position",
        "reason_code",
        "reason",
        "origin",
        "raw",
        "raw_length",
        "raw_sha256",
        "arrived_at",
    ]
    assert frame["raw"].to_list() == [b"raw2", b"raw3"]


def test_late_readings_say_which_steps_they_missed(store: Store) -> None:
    frame = store.late_readings("fleet", limit=4)
    assert frame.columns == [
        "partition",
        "position",
        "late_for",
        "device_id",
        "ts",
        "temperature",
        "site",
    ]
    assert frame["device_id"].to_list() == ["late0", "late1", "late2", "late3"]
    per_site = store.late_readings("fleet", step="per site")
    assert per_site["device_id"].to_list() == ["late0", "late2"]


def test_counts_per_table_and_step(store: Store) -> None:
    assert store.counts("fleet") == StoreCounts(
        readings=4, dead_letters=4, late_readings=4, results={"per_device": 12, "per site": 4}
    )
    assert store.counts("other") == StoreCounts(
        readings=0, dead_letters=0, late_readings=0, results={}
    )


def test_sql_reads_anything_but_writes_nothing(store: Store) -> None:
    frame = store.sql("SELECT count(*) AS n FROM readings WHERE device_id = ?", ["a"])
    assert frame["n"].item() == 4
    with pytest.raises(StoreError, match="read-only"):
        store.sql("DELETE FROM dead_letters")
    with pytest.raises(StoreError, match="read-only"):
        store.sql("DELETE FROM readings")  # a view over the segments
    # The connection reads the segment folder, and only it; nothing writes there.
    segments = f"{store.path}.segments/readings"
    for writes in (
        f"COPY (SELECT 1) TO '{segments}/x.parquet'",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{segments}/x.parquet'",
        f"SELECT 1; COPY (SELECT 1) TO '{segments}/x.parquet'",
        f"ATTACH '{segments}/x.duckdb'",
        f"EXPORT DATABASE '{segments}/x'",
        "SET enable_external_access = true",
        "LOAD httpfs",
    ):
        with pytest.raises(StoreError, match=r"read-only|one statement at a time"):
            store.sql(writes)
    assert not any(Path(segments).glob("x*"))
    with pytest.raises(StoreError, match="file system operations are disabled"):
        store.sql("SELECT * FROM read_csv('/etc/hostname')")
    beside = store.path.with_name("beside.csv")
    beside.write_text("a\n1\n")
    with pytest.raises(StoreError, match="file system operations are disabled"):
        store.sql(f"SELECT * FROM read_csv('{segments}/../../{beside.name}')")
    assert store.sql("EXPLAIN SELECT count(*) FROM readings").height > 0


def test_unknown_names_are_errors_that_list_the_known_ones(store: Store) -> None:
    with pytest.raises(StoreError, match=r"no pipeline 'nope'.*stored there: 'fleet', 'other'"):
        store.results("nope")
    with pytest.raises(StoreError, match="no step 'nope'; its steps: 'per site', 'per_device'"):
        store.results("fleet", "nope")
    with pytest.raises(StoreError, match="'site' is not a key column of step 'per_device'"):
        store.results("fleet", "per_device", key={"site": "north"})


def test_a_time_without_a_zone_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="has no time zone"):
        store.results("fleet", since=datetime(2024, 1, 1))  # noqa: DTZ001 - the point


def test_a_missing_file_is_an_error_that_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no store at .*run a pipeline with a duckdb sink"):
        Store(tmp_path / "missing.duckdb")


def test_a_file_a_running_pipeline_writes_is_an_error_that_says_so(written: Path) -> None:
    with (
        duckdb_held_elsewhere(written),
        pytest.raises(StoreError, match="a running pipeline has it open for writing"),
    ):
        Store(written)


def test_a_sink_open_in_this_process_is_an_error_that_says_so(tmp_store: Path) -> None:
    sink = DuckDBSink(tmp_store)
    sink.open(FLEET)
    try:
        with pytest.raises(StoreError, match="this process already has it open for writing"):
            Store(tmp_store)
    finally:
        sink.close()


@pytest.mark.parametrize(
    "sql", ["SHOW TABLES", "DESCRIBE readings", "FROM readings LIMIT 1", "EXPLAIN SELECT 1"]
)
def test_sql_takes_any_one_read_only_statement(store: Store, sql: str) -> None:
    store.sql(sql)


@pytest.mark.parametrize(
    "sql", ["CREATE TABLE x (a INT)", "ATTACH 'other.duckdb'", "CALL pragma_version()"]
)
def test_sql_refuses_statements_that_could_write_even_on_a_writers_connection(
    store: Store, sql: str
) -> None:
    with pytest.raises(StoreError, match="the store is read-only: run a SELECT"):
        store.sql(sql)


def test_sql_cuts_its_answer_to_the_limit(store: Store) -> None:
    assert store.sql("SELECT * FROM range(100)", limit=7).height == 7
    assert store.command("SELECT * FROM range(100)", limit=5).height == 5
