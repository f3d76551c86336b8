"""The sensors scenario (iot-kafka-spark) end to end, at full speed, against a per-event model.

Ten minutes of the three sensors from the document's own date are run through the shipped
pipeline. The reference is computed here from the feeds' own ``reports()``, one report at a
time in the order they are sent: the watermark before each, the repeats dropped, the late
ones set aside, then count/mean/min/max per minute. The windows, the counters, the stored
readings and ``POST /compute/metrics`` (the document's three requests, sent as its curl
sends them) must all agree with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import fmean

import polars as pl
import pytest
from fastapi.testclient import TestClient

from sensorstream.api.app import Serving, create_app
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.counters import RunSummary
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.sources import FeedSourceSettings
from sensorstream.sources.feeds.base import epoch_us
from sensorstream.store import Store

pytestmark = pytest.mark.e2e

START = datetime(2020, 1, 13, 15, 10, tzinfo=UTC)  # the document's request asks 15:12-15:13
DURATION = timedelta(minutes=10)
SENSORS = ("temperature", "humidity", "pressure")
SECOND = 1_000_000
MINUTE = 60 * SECOND


@dataclass
class Run:
    spec: PipelineSpec
    summary: RunSummary
    db: Path


def _spec(folder: Path, interval: timedelta | None) -> PipelineSpec:
    """The shipped pipeline at full speed, from the document's date, stored in ``folder``."""
    spec = scenario("sensors").spec(
        live=False,
        duration=DURATION,
        changes={
            "sinks": [{"type": "duckdb", "path": str(folder / "sensors.duckdb")}],
            "checkpoint": {"dir": str(folder / "checkpoints")},
        },
    )
    streams = {}
    for name, stream in spec.streams.items():
        assert isinstance(stream.source, FeedSourceSettings)
        source = stream.source.model_copy(update={"start": START, "interval": interval})
        streams[name] = stream.model_copy(update={"source": source})
    return spec.model_copy(update={"streams": streams})


@pytest.fixture(
    scope="module", params=[None, timedelta(seconds=7)], ids=["big-batches", "7s-batches"]
)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The scenario run once per way of cutting time (one batch a stream, or 7 s ones)."""
    folder = tmp_path_factory.mktemp("sensors")
    spec = _spec(folder, request.param)
    return Run(spec, Runner(spec).run(), folder / "sensors.duckdb")


@dataclass
class Reference:
    """What the pipeline must make of one sensor's reports, worked out report by report."""

    accepted: pl.DataFrame  # device_id, ts (us), value
    duplicates: int
    late: int
    windows: pl.DataFrame  # window_start (us), count, mean, min, max


def reference(spec: PipelineSpec, sensor: str) -> Reference:
    """The model: per report in send order, its watermark, then dedup, then lateness."""
    source = spec.streams[sensor].source
    assert isinstance(source, FeedSourceSettings)
    low = epoch_us(START)
    reports = source.feed.build().reports(low, low + DURATION // timedelta(microseconds=1), 0)
    event_time = spec.event_time
    ooo = event_time.out_of_orderness // timedelta(microseconds=1)
    lateness = event_time.allowed_lateness // timedelta(microseconds=1)
    horizon = ooo + lateness + MINUTE  # the dedup horizon: the one window step's span
    newest: int | None = None
    seen: set[tuple[str, int, int]] = set()
    accepted: list[tuple[str, int, int]] = []
    duplicates = late = 0
    for device, millis, value in reports.select("producer_id", "timestamp", "value").iter_rows():
        ts = millis * 1000
        watermark = None if newest is None else newest - ooo
        newest = ts if newest is None else max(newest, ts)
        reading = (device, ts, value)
        if watermark is None or ts >= watermark - horizon:
            if reading in seen:
                duplicates += 1
                continue
            seen.add(reading)
        window_end = ts // MINUTE * MINUTE + MINUTE
        if watermark is not None and window_end + lateness <= watermark:
            late += 1
            continue
        accepted.append(reading)
    frame = pl.DataFrame(accepted, schema=["device_id", "ts", "value"], orient="row")
    windows: dict[int, list[int]] = {}
    for _, ts, value in accepted:
        windows.setdefault(ts // MINUTE * MINUTE, []).append(value)
    rows = [
        (start, len(values), fmean(values), min(values), max(values))
        for start, values in sorted(windows.items())
    ]
    table = pl.DataFrame(rows, schema=["window_start", "count", "mean", "min", "max"], orient="row")
    return Reference(frame, duplicates, late, table)


@contextmanager
def client(db: Path) -> Iterator[TestClient]:
    """The scenario's query API over its store, in process."""

    @contextmanager
    def open_store() -> Iterator[Store]:
        with Store(db) as store:
            yield store

    with TestClient(create_app(Serving("sensors", open_store))) as test_client:
        yield test_client


@pytest.mark.parametrize("sensor", SENSORS)
def test_each_sensors_minutes_equal_the_reference_without_repeats_and_late_readings(
    run: Run, sensor: str
) -> None:
    expected = reference(run.spec, sensor)
    with Store(run.db) as store:
        results = store.sql(
            f"SELECT window_start, count, mean, min, max, revision, final "
            f"FROM results_sensors_{sensor}_1m WHERE device_id = ? ORDER BY window_start",
            [f"{sensor}-sensor"],
        )
    assert results["final"].all()
    got = results.select(pl.col("window_start").dt.epoch("us"), "count", "mean", "min", "max")
    assert got.select("window_start", "count", "min", "max").equals(
        expected.windows.select("window_start", "count", "min", "max")
    )
    assert got["mean"].to_list() == pytest.approx(expected.windows["mean"].to_list())
    # Late readings within the allowed lateness corrected a closed minute at least once.
    assert max(results["revision"].to_list()) > 0


@pytest.mark.parametrize("sensor", SENSORS)
def test_repeats_and_late_readings_are_counted_and_the_late_ones_kept(
    run: Run, sensor: str
) -> None:
    expected = reference(run.spec, sensor)
    assert expected.duplicates > 0
    assert expected.late > 0
    counters = run.summary.counters
    assert counters[f"stream:{sensor}:duplicates"] == expected.duplicates
    assert counters[f"stream:{sensor}:late"] == expected.late
    assert counters[f"late:{sensor}_1m"] == expected.late
    assert counters[f"stream:{sensor}:accepted"] == expected.accepted.height
    assert counters[f"stream:{sensor}:lines"] == (
        expected.accepted.height + expected.duplicates + expected.late
    )
    with Store(run.db) as store:
        late = store.sql("SELECT count(*) AS n FROM late_readings WHERE stream = ?", [sensor])
        stored = store.sql(
            f"SELECT device_id, epoch_us(ts) AS ts, {sensor} AS value FROM readings "
            "WHERE stream = ? ORDER BY ts, value",
            [sensor],
        )
    assert late["n"][0] == expected.late
    assert stored.equals(expected.accepted.sort("ts", "value"), null_equal=True)


# The document's requests, byte for byte as its curl sends them (the trailing comma too).
DOCUMENT_REQUEST = b"""{
\t"temperature" : ["count", "min"],
\t"humidity" : ["average", "max"],
\t"from": "2020-01-13 15:12:00",
\t"to": "2020-01-13 15:13:00",
}"""
WITH_MISTAKES = b"""{
\t"temperature" : ["count", "min", "wrongMetric"],
\t"humidity" : ["average", "max"],
\t"from": "2020-01-13 15:12:00",
\t"to": "2020-01-13 15:13:00",
\t"wrongKey": 1
}"""
ONLY_MISTAKES = b"""{
\t"wrong" : ["wrongMetric"],
\t"from": "2020-01-13 15:12:00",
\t"to": "2020-01-13 15:13:00",
\t"wrongKey": 1
}"""


def _expected_result(run: Run) -> dict[str, dict[str, float | int]]:
    """The document's metrics over 15:12:00-15:13:00, both included, from the reference."""
    low = epoch_us(START + timedelta(minutes=2))
    high = low + MINUTE

    def values(sensor: str) -> list[int]:
        accepted = reference(run.spec, sensor).accepted
        return accepted.filter(pl.col("ts").is_between(low, high))["value"].to_list()

    temperature, humidity = values("temperature"), values("humidity")
    return {
        "temperature": {"count": len(temperature), "min": min(temperature)},
        "humidity": {"average": fmean(humidity), "max": max(humidity)},
    }


def test_compute_metrics_answers_the_documents_request_as_it_shows(run: Run) -> None:
    headers = {"Content-Type": "application/json"}
    with client(run.db) as api:
        answer = api.post("/compute/metrics", content=DOCUMENT_REQUEST, headers=headers)
    assert answer.status_code == 200
    body = answer.json()
    expected = _expected_result(run)
    assert list(body) == ["result", "errors"]
    assert body["errors"] == []
    assert list(body["result"]) == ["temperature", "humidity"]
    assert list(body["result"]["temperature"]) == ["count", "min"]
    assert list(body["result"]["humidity"]) == ["average", "max"]
    # The document's types: whole numbers for count, min and max, a float average.
    temperature, humidity = body["result"]["temperature"], body["result"]["humidity"]
    assert type(temperature["count"]) is int
    assert type(temperature["min"]) is int
    assert type(humidity["max"]) is int
    assert type(humidity["average"]) is float
    assert temperature == expected["temperature"]
    assert humidity["max"] == expected["humidity"]["max"]
    assert humidity["average"] == pytest.approx(expected["humidity"]["average"], rel=1e-12)
    # About 61 readings in the minute, both ends included, as the document counts.
    assert 57 <= temperature["count"] <= 61


def test_compute_metrics_lists_the_documents_mistakes_and_computes_the_rest(run: Run) -> None:
    with client(run.db) as api:
        answer = api.post("/compute/metrics", content=WITH_MISTAKES)
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"]["temperature"] == _expected_result(run)["temperature"]
    assert list(body["result"]) == ["temperature", "humidity"]
    assert body["errors"] == [
        "Unexpected metric wrongMetric to compute for the sensor temperature",
        "Unexpected key wrongKey in the request body",
    ]


def test_compute_metrics_with_only_unexpected_keys_is_the_documents_400(run: Run) -> None:
    with client(run.db) as api:
        answer = api.post("/compute/metrics", content=ONLY_MISTAKES)
    assert answer.status_code == 400
    assert answer.json() == {
        "result": {},
        "errors": [
            "Unexpected key wrong in the request body",
            "Unexpected key wrongKey in the request body",
        ],
    }


def test_compute_metrics_knows_the_three_sensors_and_nothing_else(run: Run) -> None:
    every = {sensor: ["count", "average", "mean", "min", "max"] for sensor in SENSORS}
    request = {**every, "from": "2020-01-13 15:10:00", "to": "2020-01-13 15:19:59"}
    with client(run.db) as api:
        answer = api.post("/compute/metrics", json=request)
        broken = api.post("/compute/metrics", content=b'{"temperature": ["count"')
    assert answer.status_code == 200
    result = answer.json()["result"]
    for sensor in SENSORS:
        accepted = reference(run.spec, sensor).accepted.filter(pl.col("ts") >= epoch_us(START))
        assert result[sensor]["count"] == accepted.height  # every accepted reading, once
        assert result[sensor]["average"] == result[sensor]["mean"]
        assert result[sensor]["min"] == accepted["value"].min()
        assert result[sensor]["max"] == accepted["value"].max()
    assert broken.status_code == 400
    assert broken.json()["result"] == {}
    assert broken.json()["errors"][0].startswith("the body is not JSON: ")
