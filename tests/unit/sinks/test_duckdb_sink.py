from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from sensorstream.errors import SinkError
from sensorstream.readings import TS_TYPE, ReadingFormat, dead_letters
from sensorstream.sinks import (
    SINKS,
    ConsoleSink,
    DuckDBSink,
    DuckDBSinkSettings,
    KafkaSink,
    MqttSink,
    WebhookSink,
)
from sensorstream.sinks.base import FROM_START, PipelineInfo, SinkBatch, StepInfo
from sensorstream.sinks.duckdb_tables import results_table_name
from sensorstream.store import Store, scan_readings
from sensorstream.testing import duckdb_held_elsewhere

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"}, tags=["site"])
STEP = "per_device"
TABLE = "results_fleet_per_device"


def _info(*steps: StepInfo, name: str = "fleet") -> PipelineInfo:
    steps = steps or (StepInfo(STEP, ("device_id",), ("temperature_mean", "count")),)
    return PipelineInfo(name, steps, FORMAT.canonical_schema())


def _readings(*devices: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": list(devices),
            "ts": [T0 + timedelta(seconds=i) for i in range(len(devices))],
            "temperature": [float(i) for i in range(len(devices))],
            "site": ["north"] * len(devices),
        },
        schema=FORMAT.canonical_schema(),
    )


def _results(*rows: tuple[str | None, int, float, str]) -> pl.DataFrame:
    """Rows of (device, minute, mean, op) for one-minute windows."""
    return pl.DataFrame(
        {
            "device_id": [r[0] for r in rows],
            "window_start": [T0 + timedelta(minutes=r[1]) for r in rows],
            "window_end": [T0 + timedelta(minutes=r[1] + 1) for r in rows],
            "temperature_mean": [r[2] for r in rows],
            "count": [1] * len(rows),
            "revision": [0] * len(rows),
            "final": [True] * len(rows),
            "_op": [r[3] for r in rows],
        },
        schema={
            "device_id": pl.String(),
            "window_start": TS_TYPE,
            "window_end": TS_TYPE,
            "temperature_mean": pl.Float64(),
            "count": pl.UInt32(),
            "revision": pl.Int64(),
            "final": pl.Boolean(),
            "_op": pl.String(),
        },
    )


def _dead(raw: str) -> pl.DataFrame:
    return dead_letters([raw.encode()], ["invalid_json"], ["invalid JSON"], ["line 1 of x"], NOW)


def _sink(path: Path, *, store_readings: bool = True, flush_rows: int = 200_000) -> DuckDBSink:
    return DuckDBSink(path, store_readings, flush_rows=flush_rows, clock=lambda: NOW)


@pytest.fixture
def sink(tmp_store: Path) -> Iterator[DuckDBSink]:
    opened = _sink(tmp_store)
    opened.open(_info())
    yield opened
    opened.close()


def _table(path: Path, query: str) -> pl.DataFrame:
    """What is committed, read through a second connection of this process."""
    connection = duckdb.connect(str(path))
    connection.execute("SET TimeZone = 'UTC'")
    try:
        frame: pl.DataFrame = connection.sql(query).pl()
    finally:
        connection.close()
    return frame


def _stored_readings(path: Path) -> pl.DataFrame:
    """The raw readings in the store's segments, read without its DuckDB file."""
    return scan_readings(path).collect()


def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Whether ``condition`` holds within the timeout (a segment is written in a thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _stored_results(path: Path, table: str = TABLE) -> list[tuple[str | None, int, float]]:
    frame = _table(path, f'SELECT * FROM "{table}" ORDER BY window_start, device_id')
    return [
        (
            row["device_id"],
            (row["window_start"] - T0) // timedelta(minutes=1),
            row["temperature_mean"],
        )
        for row in frame.iter_rows(named=True)
    ]


def test_readings_dead_letters_and_late_readings_are_stored_with_their_origin(
    sink: DuckDBSink, tmp_store: Path
) -> None:
    late = _readings("c").with_columns(pl.lit(STEP).alias("late_for"))
    sink.write(SinkBatch(0, 10, readings=_readings("a", "b"), dead_letters=_dead("{oops")))
    sink.write(SinkBatch(1, 3, readings=_readings("d"), late=late))
    sink.flush()

    readings = _stored_readings(tmp_store).sort("partition", "device_id")
    assert readings.columns == ["pipeline", "partition", "position", *FORMAT.canonical_schema()]
    assert readings.select("pipeline", "partition", "position", "device_id").rows() == [
        ("fleet", 0, 10, "a"),
        ("fleet", 0, 10, "b"),
        ("fleet", 1, 3, "d"),
    ]
    assert readings["ts"].dtype == TS_TYPE
    dead = _table(tmp_store, "SELECT * FROM dead_letters")
    assert dead.select("partition", "position", "reason_code", "raw", "arrived_at").rows() == [
        (0, 10, "invalid_json", b"{oops", NOW)
    ]
    stored_late = _table(tmp_store, "SELECT * FROM late_readings")
    assert stored_late.select("partition", "position", "late_for", "device_id").rows() == [
        (1, 3, STEP, "c")
    ]


def test_nothing_is_committed_before_flush_unless_the_buffer_is_full(tmp_store: Path) -> None:
    sink = _sink(tmp_store, flush_rows=3)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, readings=_readings("a", "b"), dead_letters=_dead("x")))
    sink.write(SinkBatch(0, 2, dead_letters=_dead("y")))
    assert _stored_readings(tmp_store).height == 0
    assert _table(tmp_store, "SELECT count(*) AS n FROM dead_letters")["n"].item() == 0
    sink.write(SinkBatch(0, 3, readings=_readings("c")))  # 3 readings wait: a segment
    assert _eventually(lambda: _stored_readings(tmp_store).height == 3)
    assert _table(tmp_store, "SELECT count(*) AS n FROM dead_letters")["n"].item() == 0
    sink.write(SinkBatch(0, 4, dead_letters=_dead("z")))  # 3 rows wait: a transaction
    assert _table(tmp_store, "SELECT count(*) AS n FROM dead_letters")["n"].item() == 3
    sink.close()


def test_an_upsert_replaces_the_stored_result_of_its_window(
    sink: DuckDBSink, tmp_store: Path
) -> None:
    sink.write(SinkBatch(0, 1, results={STEP: _results(("a", 0, 1.0, "upsert"))}))
    sink.flush()
    sink.write(SinkBatch(0, 2, results={STEP: _results(("a", 0, 2.0, "upsert"))}))
    sink.write(SinkBatch(0, 2, results={STEP: _results(("a", 1, 5.0, "upsert"))}))
    sink.flush()
    assert _stored_results(tmp_store) == [("a", 0, 2.0), ("a", 1, 5.0)]


def test_a_delete_retracts_the_stored_result(sink: DuckDBSink, tmp_store: Path) -> None:
    sink.write(SinkBatch(0, 1, results={STEP: _results(("a", 0, 1.0, "upsert"))}))
    sink.flush()
    sink.write(SinkBatch(0, 2, results={STEP: _results(("a", 0, 0.0, "delete"))}))
    sink.flush()
    assert _stored_results(tmp_store) == []


def test_results_apply_in_arrival_order_within_a_flush(sink: DuckDBSink, tmp_store: Path) -> None:
    sink.write(
        SinkBatch(
            0,
            1,
            results={
                STEP: _results(
                    ("a", 0, 1.0, "delete"),
                    ("a", 0, 2.0, "upsert"),  # delete then upsert: the upsert stays
                    ("b", 0, 3.0, "upsert"),
                    ("b", 0, 0.0, "delete"),  # upsert then delete: nothing stays
                )
            },
        )
    )
    sink.write(SinkBatch(0, 2, results={STEP: _results(("c", 0, 4.0, "upsert"))}))
    sink.write(SinkBatch(0, 3, results={STEP: _results(("c", 0, 5.0, "upsert"))}))
    sink.flush()
    assert _stored_results(tmp_store) == [("a", 0, 2.0), ("c", 0, 5.0)]


def test_a_null_key_is_a_key_of_its_own(sink: DuckDBSink, tmp_store: Path) -> None:
    sink.write(SinkBatch(0, 1, results={STEP: _results((None, 0, 1.0, "upsert"))}))
    sink.flush()
    sink.write(SinkBatch(0, 2, results={STEP: _results((None, 0, 2.0, "upsert"))}))
    sink.flush()
    assert _stored_results(tmp_store) == [(None, 0, 2.0)]


def test_restore_forgets_rows_after_the_positions_and_all_of_a_partition_from_start(
    tmp_store: Path,
) -> None:
    """Partition 2 restarts from its beginning; partition 3 is not named (another worker's)."""
    sink = _sink(tmp_store)
    sink.open(_info())
    for position in (1, 2, 3):
        for partition in (0, 1, 2, 3):
            sink.write(
                SinkBatch(partition, position, readings=_readings("a"), dead_letters=_dead("x"))
            )
    sink.close()
    other = _sink(tmp_store)
    other.open(_info(name="other"))
    other.write(SinkBatch(0, 9, readings=_readings("z")))
    other.close()

    sink = _sink(tmp_store)
    sink.open(_info())
    sink.restore({0: 2, 1: 1, 2: FROM_START})
    sink.close()
    untouched = [("fleet", 3, 1), ("fleet", 3, 2), ("fleet", 3, 3)]
    expected = [("fleet", 0, 1), ("fleet", 0, 2), ("fleet", 1, 1), *untouched]
    dead = _table(tmp_store, "SELECT pipeline, partition, position FROM dead_letters ORDER BY ALL")
    assert dead.rows() == expected
    readings = (
        _stored_readings(tmp_store).select("pipeline", "partition", "position").sort(pl.all())
    )
    # another pipeline's rows are not touched
    assert readings.rows() == [*expected, ("other", 0, 9)]


def test_replaying_after_restore_gives_the_same_tables(tmp_path: Path) -> None:
    def batch(position: int) -> SinkBatch:
        device = f"d{position}"
        late = _readings(device).with_columns(pl.lit(STEP).alias("late_for"))
        results = _results(
            (device, position, float(position), "upsert"), ("x", 0, position, "upsert")
        )
        return SinkBatch(
            0, position, readings=_readings(device), late=late, dead_letters=_dead(device),
            results={STEP: results},
        )  # fmt: skip

    def tables(path: Path) -> list[pl.DataFrame]:
        return [
            _stored_readings(path).sort(pl.all()),
            *(
                _table(path, f'SELECT * FROM "{t}" ORDER BY ALL')
                for t in ("dead_letters", "late_readings", TABLE)
            ),
        ]

    straight = _sink(tmp_path / "straight.duckdb")
    straight.open(_info())
    for position in range(1, 6):
        straight.write(batch(position))
    straight.close()

    crashed = _sink(tmp_path / "crashed.duckdb")
    crashed.open(_info())
    for position in range(1, 6):
        crashed.write(batch(position))
        if position == 3:
            crashed.flush()  # the checkpoint at position 3
    crashed.close()
    resumed = _sink(tmp_path / "crashed.duckdb")
    resumed.open(_info())
    resumed.restore({0: 3})
    for position in (4, 5):
        resumed.write(batch(position))
    resumed.close()

    for expected, actual in zip(
        tables(tmp_path / "straight.duckdb"), tables(tmp_path / "crashed.duckdb"), strict=True
    ):
        assert_frame_equal(actual, expected)


@pytest.mark.parametrize(
    ("step", "table"),
    [
        ("avg temp/1m", "results_fleet_avg_temp_1m"),
        ("select", "results_fleet_select"),
        ('say "hi"', "results_fleet_say_hi"),
        ("Ünïcode", "results_fleet_unicode"),
        ("", "results_fleet_unnamed"),
    ],
)
def test_odd_step_names_get_readable_table_names(tmp_store: Path, step: str, table: str) -> None:
    sink = _sink(tmp_store)
    sink.open(_info(StepInfo(step, ("device_id",), ("temperature_mean",))))
    sink.write(SinkBatch(0, 1, results={step: _results(("a", 0, 1.0, "upsert"))}))
    sink.close()
    assert results_table_name("fleet", step) == table
    assert _stored_results(tmp_store, table) == [("a", 0, 1.0)]
    recorded = _table(tmp_store, "SELECT step, results_table FROM pipeline_steps").rows()
    assert recorded == [(step, table)]


def test_steps_whose_names_clash_get_distinct_tables(tmp_store: Path) -> None:
    steps = [StepInfo(name, ("device_id",), ("temperature_mean",)) for name in ("a-b", "A B")]
    sink = _sink(tmp_store)
    sink.open(_info(*steps))
    for value, step in enumerate(steps):
        sink.write(SinkBatch(0, 1, results={step.name: _results(("a", 0, value, "upsert"))}))
    sink.close()
    tables = dict(_table(tmp_store, "SELECT step, results_table FROM pipeline_steps").rows())
    assert tables["a-b"] == "results_fleet_a_b"
    assert tables["A B"].startswith("results_fleet_a_b_")
    assert _stored_results(tmp_store, tables["a-b"]) == [("a", 0, 0.0)]
    assert _stored_results(tmp_store, tables["A B"]) == [("a", 0, 1.0)]


def test_reopening_keeps_results_and_their_tables(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, results={STEP: _results(("a", 0, 1.0, "upsert"))}))
    sink.close()
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 2, results={STEP: _results(("a", 0, 3.0, "upsert"))}))
    sink.close()
    assert _stored_results(tmp_store) == [("a", 0, 3.0)]
    assert _table(tmp_store, "SELECT count(*) AS n FROM pipeline_steps")["n"].item() == 1


def test_a_new_output_column_is_added_to_the_results_table(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, results={STEP: _results(("a", 0, 1.0, "upsert"))}))
    sink.close()
    more = StepInfo(STEP, ("device_id",), ("temperature_mean", "count", "temperature_max"))
    sink = _sink(tmp_store)
    sink.open(_info(more))
    results = _results(("a", 1, 2.0, "upsert")).with_columns(temperature_max=pl.lit(9.0))
    sink.write(SinkBatch(0, 2, results={STEP: results}))
    sink.close()
    stored = _table(tmp_store, f"SELECT temperature_max FROM {TABLE} ORDER BY window_start")
    assert stored["temperature_max"].to_list() == [None, 9.0]


def test_a_step_keyed_differently_than_before_is_refused(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.close()
    rekeyed = _sink(tmp_store)
    with pytest.raises(SinkError, match=r"keyed its results by \['device_id'\].*now by \['site'\]"):
        rekeyed.open(_info(StepInfo(STEP, ("site",), ("temperature_mean",))))
    with Store(tmp_store) as store:  # the failed open let go of the file
        assert store.pipeline("fleet").step(STEP).key == ("device_id",)


def test_a_measurement_whose_type_changed_is_refused(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.close()
    as_text = ReadingFormat(measurements={"temperature": "string"})
    changed = _sink(tmp_store)
    with pytest.raises(
        SinkError, match=r"column 'temperature' of table late_readings .* is DOUBLE"
    ):
        changed.open(PipelineInfo("fleet", (), as_text.canonical_schema()))


def test_without_store_readings_no_readings_are_kept(tmp_store: Path) -> None:
    sink = _sink(tmp_store, store_readings=False)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, readings=_readings("a"), dead_letters=_dead("x")))
    sink.close()
    tables = _table(tmp_store, "SHOW TABLES")["name"].to_list()
    assert "readings" not in tables
    assert not tmp_store.with_name("store.duckdb.segments").exists()
    assert _table(tmp_store, "SELECT count(*) AS n FROM dead_letters")["n"].item() == 1


def test_results_of_an_undeclared_step_are_refused(sink: DuckDBSink) -> None:
    with pytest.raises(SinkError, match=r"step 'nope'.*declared: per_device"):
        sink.write(SinkBatch(0, 1, results={"nope": _results(("a", 0, 1.0, "upsert"))}))


def test_an_unknown_op_is_refused(sink: DuckDBSink) -> None:
    sink.write(SinkBatch(0, 1, results={STEP: _results(("a", 0, 1.0, "merge"))}))
    with pytest.raises(SinkError, match=r"_op values \['merge'\]; allowed: upsert, delete"):
        sink.flush()


def test_writing_before_open_is_refused(tmp_store: Path) -> None:
    with pytest.raises(SinkError, match="not open; call open"):
        _sink(tmp_store).write(SinkBatch(0, 1, readings=_readings("a")))


def test_a_file_another_process_writes_is_refused_with_a_clear_error(tmp_store: Path) -> None:
    with (
        duckdb_held_elsewhere(tmp_store),
        pytest.raises(SinkError, match="another process has it open"),
    ):
        _sink(tmp_store).open(_info())


def test_settings_build_the_sink_and_forbid_unknown_fields(tmp_store: Path) -> None:
    settings = DuckDBSinkSettings.model_validate(
        {"type": "duckdb", "path": str(tmp_store), "store_readings": False}
    )
    built = settings.build()
    assert (built.path, built.store_readings) == (tmp_store, False)
    with pytest.raises(ValidationError, match="stor_readings"):
        DuckDBSinkSettings.model_validate({"type": "duckdb", "stor_readings": False})


def test_the_registry_names_every_sink() -> None:
    assert {
        "duckdb": DuckDBSink,
        "console": ConsoleSink,
        "webhook": WebhookSink,
        "kafka": KafkaSink,
        "mqtt": MqttSink,
    } == SINKS


def test_a_store_from_before_raw_bytes_gets_its_text_payloads_as_utf8(tmp_store: Path) -> None:
    with duckdb.connect(str(tmp_store)) as con:
        con.execute(
            "CREATE TABLE dead_letters (pipeline VARCHAR, partition INTEGER, position BIGINT, "
            "raw VARCHAR, reason VARCHAR, origin VARCHAR, arrived_at TIMESTAMPTZ)"
        )
        con.execute("INSERT INTO dead_letters VALUES ('fleet', 0, 1, 'héllo', 'bad', 'x', now())")
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.restore({0: 1})
    sink.write(SinkBatch(0, 2, dead_letters=_dead("{oops")))
    sink.close()
    dead = _table(tmp_store, "SELECT raw, reason_code FROM dead_letters ORDER BY position")
    assert dead.rows() == [("héllo".encode(), None), (b"{oops", "invalid_json")]
