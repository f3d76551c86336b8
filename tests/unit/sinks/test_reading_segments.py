"""Raw readings as Parquet segments: their names, restore, retention, and readers meanwhile."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from sensorstream.errors import SinkError
from sensorstream.readings import TS_TYPE, ReadingFormat
from sensorstream.sinks import DuckDBSink, DuckDBSinkSettings
from sensorstream.sinks.base import FROM_START, PipelineInfo, SinkBatch, StepInfo
from sensorstream.sinks.segments import pipeline_folder
from sensorstream.store import Store, scan_readings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"}, tags=["site"])
STEP = StepInfo("per_device", ("device_id",), ("temperature_mean",))


def _info(name: str = "fleet") -> PipelineInfo:
    return PipelineInfo(name, (STEP,), FORMAT.canonical_schema())


def _readings(*devices: str, day: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": list(devices),
            "ts": [T0 + timedelta(days=day, seconds=i) for i in range(len(devices))],
            "temperature": [float(i) for i in range(len(devices))],
            "site": ["north"] * len(devices),
        },
        schema=FORMAT.canonical_schema(),
    )


def _sink(path: Path, retention: timedelta | None = None) -> DuckDBSink:
    return DuckDBSink(path, retention=retention)


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def _positions(store: Path, pipeline: str = "fleet") -> list[tuple[int, int]]:
    frame = scan_readings(store, pipeline).select("partition", "position").collect()
    return sorted(frame.rows())


def test_each_flush_writes_one_segment_per_partition_named_by_its_positions(
    tmp_store: Path,
) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 10, readings=_readings("a", "b")))
    sink.write(SinkBatch(1, 7, readings=_readings("c")))
    sink.write(SinkBatch(0, 25, readings=_readings("d")))
    sink.flush()
    sink.write(SinkBatch(0, 30, readings=_readings("e")))
    sink.close()

    folder = tmp_store.with_name("store.duckdb.segments") / "readings" / "pipeline=fleet"
    assert folder == pipeline_folder(tmp_store, "fleet")
    assert _names(folder) == [
        "part-0-10-25-1.parquet",
        "part-0-30-30-3.parquet",
        "part-1-7-7-2.parquet",
    ]
    # The pipeline is the folder's, hive-style; the file holds the rest.
    assert pq.read_schema(folder / "part-0-10-25-1.parquet").names == [
        "partition", "position", "device_id", "ts", "temperature", "site",
    ]  # fmt: skip
    rows = scan_readings(tmp_store).sort("position").collect()
    assert rows.columns == ["pipeline", "partition", "position", *FORMAT.canonical_schema()]
    assert rows.select("pipeline", "position", "device_id").rows() == [
        ("fleet", 7, "c"), ("fleet", 10, "a"), ("fleet", 10, "b"), ("fleet", 25, "d"),
        ("fleet", 30, "e"),
    ]  # fmt: skip


def test_another_process_reads_the_segments_while_the_sink_holds_the_file(
    tmp_store: Path,
) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    try:
        sink.write(SinkBatch(0, 1, readings=_readings("a", "b", "c")))
        sink.flush()
        sink.write(SinkBatch(0, 2, readings=_readings("d")))  # not flushed: not there yet
        script = (
            "import sys; from sensorstream.store import scan_readings; "
            "print(scan_readings(sys.argv[1], 'fleet').collect().height)"
        )
        read = subprocess.run(
            [sys.executable, "-c", script, str(tmp_store)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert read.stdout.strip() == "3"
    finally:
        sink.close()


def test_restore_rewrites_a_segment_that_straddles_the_checkpoint(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    for position in (1, 2, 3):
        sink.write(SinkBatch(0, position, readings=_readings(f"d{position}")))
    sink.close()  # one segment, positions 1 to 3
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.restore({0: 2})
    sink.close()
    assert _names(pipeline_folder(tmp_store, "fleet")) == ["part-0-1-2-1.parquet"]
    assert _positions(tmp_store) == [(0, 1), (0, 2)]


def test_a_rewrite_a_crash_interrupted_is_completed_by_the_next_restore(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    for position in (1, 2, 3):
        sink.write(SinkBatch(0, position, readings=_readings(f"d{position}")))
    sink.close()
    folder = pipeline_folder(tmp_store, "fleet")
    original = folder.parent / "original.parquet"
    shutil.copy(folder / "part-0-1-3-1.parquet", original)
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.restore({0: 2})
    sink.close()
    shutil.move(original, folder / "part-0-1-3-1.parquet")  # as if killed before the delete
    assert _positions(tmp_store).count((0, 1)) == 2

    sink = _sink(tmp_store)
    sink.open(_info())
    sink.restore({0: 2})  # the same checkpoint again
    sink.close()
    assert _names(folder) == ["part-0-1-2-1.parquet"]
    assert _positions(tmp_store) == [(0, 1), (0, 2)]


def test_a_fresh_start_drops_this_pipelines_segments_only(tmp_store: Path) -> None:
    for name in ("fleet", "other"):
        sink = _sink(tmp_store)
        sink.open(_info(name))
        sink.write(SinkBatch(0, 1, readings=_readings("a")))
        sink.close()
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.restore({0: FROM_START})
    sink.close()
    assert _positions(tmp_store, "fleet") == []
    assert _positions(tmp_store, "other") == [(0, 1)]


def test_a_half_written_segment_is_never_read_and_removed_on_open(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, readings=_readings("a")))
    sink.close()
    half = pipeline_folder(tmp_store, "fleet") / ".part-0-2-2-2.parquet.tmp"
    half.write_bytes(b"PAR1 and then the process was killed")
    assert _positions(tmp_store) == [(0, 1)]
    with Store(tmp_store) as store:
        assert store.sql("SELECT count(*) AS n FROM readings")["n"].item() == 1
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.close()
    assert not half.exists()


def test_a_failed_segment_write_is_raised_by_flush(
    tmp_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(frame: pl.DataFrame, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sensorstream.sinks.segment_writer.write_segment", full_disk)
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, readings=_readings("a")))
    with pytest.raises(SinkError, match=r"writing readings of pipeline 'fleet' .* No space left"):
        sink.flush()
    sink.close()


def test_a_started_flush_is_durable_when_its_wait_returns_and_later_writes_go_on(
    tmp_store: Path,
) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, readings=_readings("a")))
    wait = sink.flush_started()
    sink.write(SinkBatch(0, 2, readings=_readings("b")))  # the next checkpoint's
    waiter = threading.Thread(target=wait)  # the checkpointer's thread
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive()
    assert (0, 1) in _positions(tmp_store)
    sink.close()
    assert _positions(tmp_store) == [(0, 1), (0, 2)]


def test_a_failed_segment_write_is_raised_by_a_started_flushs_wait(
    tmp_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Event()  # the write fails only once the flush has started

    def full_disk(frame: pl.DataFrame, path: Path) -> None:
        started.wait(10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sensorstream.sinks.segment_writer.write_segment", full_disk)
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, readings=_readings("a")))
    wait = sink.flush_started()
    started.set()
    with pytest.raises(SinkError, match=r"writing readings of pipeline 'fleet' .* No space left"):
        wait()
    with pytest.raises(SinkError):
        sink.close()


def test_retention_deletes_segments_older_than_the_newest_reading_by_more_than_it(
    tmp_store: Path,
) -> None:
    def week_sink() -> DuckDBSink:
        sink = _sink(tmp_store, timedelta(days=7))
        sink.open(_info())
        return sink

    results = pl.DataFrame(
        {
            "device_id": ["a"],
            "window_start": [T0],
            "window_end": [T0 + timedelta(minutes=1)],
            "temperature_mean": [1.0],
            "revision": [0],
            "final": [True],
        },
        schema_overrides={"window_start": TS_TYPE, "window_end": TS_TYPE},
    )
    sink = week_sink()
    for position, day in enumerate((0, 5, 10), start=1):
        batch = SinkBatch(0, position, readings=_readings("a", day=day))
        if day == 0:
            batch.results = {STEP.name: results}
        sink.write(batch)
        sink.flush()
    assert _positions(tmp_store) == [(0, 2), (0, 3)]  # day 0 is over 7 days behind day 10
    sink.close()

    sink = week_sink()  # the newest event times of stored segments come from their files
    sink.write(SinkBatch(0, 4, readings=_readings("a", day=13)))
    sink.close()
    assert _positions(tmp_store) == [(0, 3), (0, 4)]
    with Store(tmp_store) as store:  # window results stay
        assert store.results("fleet", STEP.name)["window_start"].to_list() == [T0]


def test_retention_is_a_positive_duration_in_the_settings(tmp_store: Path) -> None:
    settings = DuckDBSinkSettings.model_validate(
        {"path": str(tmp_store), "retention": {"readings": "7d"}}
    )
    assert settings.build().retention == timedelta(days=7)
    assert settings.model_dump(mode="json")["retention"] == {"readings": "7d"}
    assert DuckDBSinkSettings().build().retention is None
    with pytest.raises(ValidationError, match="longer than zero"):
        DuckDBSinkSettings.model_validate({"retention": {"readings": "0s"}})
    with pytest.raises(ValidationError, match="reading"):
        DuckDBSinkSettings.model_validate({"retention": {"reading": "7d"}})


def test_the_readings_table_is_gone_from_the_duckdb_file(tmp_store: Path) -> None:
    sink = _sink(tmp_store)
    sink.open(_info())
    sink.write(SinkBatch(0, 1, readings=_readings("a")))
    sink.close()
    with duckdb.connect(str(tmp_store), read_only=True) as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert "readings" not in tables
    assert "dead_letters" in tables
