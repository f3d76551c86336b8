"""Reading raw readings back: each device's latest values, and series raw or bucketed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensorstream.errors import StoreError
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.sinks import DuckDBSink
from sensorstream.store import Store
from sensorstream.testing import ListSource

START = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Two devices for three minutes at 1 Hz; b has no humidity after the first minute."""
    folder = tmp_path_factory.mktemp("readings")
    lines = []
    for s in range(180):
        for device in ("a", "b"):
            reading: dict[str, object] = {
                "device_id": device,
                "ts": (START + timedelta(seconds=s)).isoformat(),
                "temperature": float(s) if device == "a" else 100.0 + s,
            }
            if device == "a" or s < 60:
                reading["humidity"] = 50.0
            lines.append(json.dumps(reading))
    (folder / "r.ndjson").write_text("\n".join(lines) + "\n")
    spec = PipelineSpec.model_validate(
        {
            "name": "fleet",
            "source": {"type": "file", "path": str(folder / "r.ndjson")},
            "readings": {"measurements": {"temperature": "float", "humidity": "float"}},
            "sinks": [{"type": "duckdb", "path": str(folder / "s.duckdb")}],
            "checkpoint": {"dir": str(folder / "ckpt")},
        }
    )
    Runner(spec).run()
    with Store(folder / "s.duckdb") as opened:
        yield opened


def test_devices_show_their_last_reading_and_latest_values(store: Store) -> None:
    devices = store.devices("fleet")
    assert devices.select("device_id", "readings", "temperature", "humidity").rows() == [
        ("a", 180, 179.0, 50.0),
        ("b", 180, 279.0, 50.0),  # b's newest humidity came at 59 s: still its latest
    ]
    assert devices["last_seen"].to_list() == [START + timedelta(seconds=179)] * 2


def test_a_raw_series_is_one_devices_readings_in_a_range(store: Store) -> None:
    series = store.series(
        "fleet",
        "temperature",
        device="a",
        since=START + timedelta(seconds=10),
        until=START + timedelta(seconds=13),
    )
    assert series.rows() == [("a", START + timedelta(seconds=s), float(s)) for s in (10, 11, 12)]


def test_a_bucketed_series_aggregates_each_bucket(store: Store) -> None:
    series = store.series("fleet", "temperature", every=timedelta(minutes=1), agg="max")
    assert series.rows() == [
        ("a", START, 59.0, 60),
        ("b", START, 159.0, 60),
        ("a", START + timedelta(minutes=1), 119.0, 60),
        ("b", START + timedelta(minutes=1), 219.0, 60),
        ("a", START + timedelta(minutes=2), 179.0, 60),
        ("b", START + timedelta(minutes=2), 279.0, 60),
    ]


@pytest.mark.parametrize(
    ("measurement", "options", "message"),
    [
        ("pressure", {}, "stores no measurement 'pressure'; it has: temperature, humidity"),
        ("temperature", {"every": timedelta(minutes=1), "agg": "median"}, "agg 'median'"),
        ("temperature", {"every": timedelta(0)}, "positive duration"),
    ],
)
def test_a_bad_series_request_says_what_is_allowed(
    store: Store, measurement: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        store.series("fleet", measurement, **options)  # type: ignore[arg-type]


def test_a_running_pipelines_store_is_read_through_its_sinks_reader(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "live.duckdb", flush_rows=1)
    seen: list[int] = []

    def peek(*_: object) -> None:
        # Segments are written in the background: a reader sees what a flush made durable.
        sink.flush()
        with Store(sink.path, sink.reader()) as store:  # while the pipeline holds the file
            seen.append(store.counts("live").readings)

    batches = [
        [json.dumps({"device_id": "a", "ts": 1_700_000_000 + s, "t": 1.0})] for s in range(3)
    ]
    spec = PipelineSpec.model_validate(
        {
            "name": "live",
            "source": {"type": "simulator"},
            "readings": {"measurements": {"t": "float"}},
            "checkpoint": {"dir": str(tmp_path / "ckpt")},
        }
    )
    Runner(spec, source=ListSource(batches), sinks=[sink], on_batch=peek).run()
    assert seen == [1, 2, 3]
