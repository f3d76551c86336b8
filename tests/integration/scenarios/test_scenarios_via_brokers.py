"""A scenario through a real broker stores what its embedded run stores, window for window.

The weather scenario runs for half an hour of event time at full speed, its feed published
to Mosquitto (QoS 1, read through the MQTT source's durable log) or to Kafka (a topic per
stream, keyed by device), and its pipeline reading the broker. The stored 1-minute
windows must equal a per-report reference computed from the feed's own ``reports()``, and
the embedded run's results to the bit. The command line says where it publishes and what
it reads, and fails clearly on a bad address or an unreachable broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from sensorstream.pipeline.spec import parse_spec
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.scenarios.brokers import Journey, Route, routed
from sensorstream.sources.feeds.base import DUE, epoch_us
from sensorstream.sources.feeds.weather import WeatherFeedSettings
from sensorstream.sources.synthetic import DEFAULT_START
from tests.brokers import KafkaBroker, MqttBroker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
SPAN = timedelta(minutes=30)
COLUMNS = ["device_id", "window_start", "avg_temp", "avg_hum", "count"]


def changes(folder: Path) -> dict[str, object]:
    """The scenario's sections pointed into the test's folder, the API not served."""
    return {
        "sinks": [{"type": "duckdb", "path": str(folder / "weather.duckdb")}],
        "checkpoint": {"dir": str(folder / "checkpoints"), "interval": "1s"},
        "api": {"serve": False},
    }


def stored(folder: Path) -> pl.DataFrame:
    """The stored 1-minute windows, final, in key order."""
    with duckdb.connect(str(folder / "weather.duckdb"), read_only=True) as con:
        frame: pl.DataFrame = con.sql(
            f"SELECT {', '.join(COLUMNS)}, final FROM results_weather_avg_1m"
        ).pl()
    assert frame["final"].all()
    return frame.drop("final").sort("device_id", "window_start")


def reference() -> pl.DataFrame:
    """The 1-minute means per station, from the feed's reports, one report at a time."""
    low = epoch_us(DEFAULT_START)
    reports = WeatherFeedSettings().build().reports(low, low + SPAN // timedelta(microseconds=1), 0)
    sums: dict[tuple[str, int], list[float]] = {}
    for client, due, temperature, humidity in reports.select(
        "client", DUE, "temperature", "humidity"
    ).iter_rows():
        window = due - due % 60_000_000
        acc = sums.setdefault((client, window), [0.0, 0.0, 0])
        acc[0] += temperature
        acc[1] += humidity
        acc[2] += 1
    rows = [
        {
            "device_id": client,
            "window_start": window,
            "avg_temp": t / n,
            "avg_hum": h / n,
            "count": int(n),
        }
        for (client, window), (t, h, n) in sums.items()
    ]
    return (
        pl.DataFrame(rows)
        .with_columns(pl.col("window_start").cast(pl.Datetime("us", "UTC")))
        .sort("device_id", "window_start")
    )


def run_embedded(folder: Path) -> pl.DataFrame:
    spec = scenario("weather").spec(live=False, duration=SPAN, changes=changes(folder))
    Runner(spec, fresh=True).run()
    return stored(folder)


def run_through(url: str, folder: Path) -> tuple[pl.DataFrame, int]:
    """The scenario through the broker at ``url``: its windows, and the lines read."""
    journey = Journey.of(
        scenario("weather"), url, live=False, duration=SPAN, changes=changes(folder)
    ).open()
    runner = Runner(journey.spec, sources=journey.sources(), fresh=True)
    journey.clear_logs()
    journey.start()
    try:
        summary = runner.run()
    finally:
        journey.stop()
    return stored(folder), summary.counters.get("lines")


def check_equal(through: pl.DataFrame, embedded: pl.DataFrame) -> None:
    expected = reference()
    assert through.height == expected.height == 93  # 31 minutes touched, three stations
    assert_frame_equal(
        through.with_columns(pl.col("window_start").dt.convert_time_zone("UTC")),
        expected,
        check_dtypes=False,
        abs_tol=1e-9,
    )
    assert_frame_equal(through, embedded)  # the same run, to the bit


def test_weather_through_kafka_stores_the_embedded_runs_windows(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    url = f"kafka://{kafka.bootstrap}/weather-{uuid.uuid4().hex[:10]}"
    through, lines = run_through(url, tmp_path / "kafka")
    assert lines == 1440  # 900 + 360 + 180 reports: each read once
    check_equal(through, run_embedded(tmp_path / "embedded"))


def test_weather_through_mqtt_stores_the_embedded_runs_windows(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    url = f"{mosquitto.url}/weather-{uuid.uuid4().hex[:10]}"
    through, lines = run_through(url, tmp_path / "mqtt")
    assert lines == 1440
    check_equal(through, run_embedded(tmp_path / "embedded"))


def test_a_kafka_rerun_reads_only_its_own_reports(kafka: KafkaBroker, tmp_path: Path) -> None:
    url = f"kafka://{kafka.bootstrap}/weather-{uuid.uuid4().hex[:10]}"
    first, _ = run_through(url, tmp_path / "first")
    again, lines = run_through(url, tmp_path / "again")  # the topic holds both runs now
    assert lines == 1440
    assert_frame_equal(again, first)


TWO_STREAMS = """
name: two_streams
streams:
  north:
    source: {type: feed, feed: {kind: weather, devices: {n1: 2s, n2: 5s}}, duration: 20m}
    readings: &weather
      device_field: client
      time_field: ts
      measurements: {temperature: float, humidity: float}
  south:
    source: {type: feed, feed: {kind: weather, devices: {s1: 3s}}, seed: 5, duration: 20m}
    readings: *weather
steps:
  - {name: north_1m, input: north, window: {type: tumbling, size: 1m}, aggregates: [count]}
  - name: south_1m
    input: south
    window: {type: tumbling, size: 1m}
    aggregates: [count, mean(temperature) as t]
sinks: [{type: duckdb, path: "{folder}/two.duckdb"}]
checkpoint: {dir: "{folder}/checkpoints", interval: 1s}
api: {serve: false}
"""


def two_streams(folder: Path) -> pl.DataFrame:
    with duckdb.connect(str(folder / "two.duckdb"), read_only=True) as con:
        north: pl.DataFrame = con.sql(
            "SELECT * EXCLUDE (updated_at) FROM results_two_streams_north_1m"
        ).pl()
        south: pl.DataFrame = con.sql(
            "SELECT * EXCLUDE (updated_at) FROM results_two_streams_south_1m"
        ).pl()
    return pl.concat([north.with_columns(t=None), south], how="diagonal_relaxed").sort(
        "device_id", "window_start"
    )


@pytest.mark.parametrize("broker", ["kafka", "mosquitto"])
def test_every_feed_stream_of_a_pipeline_goes_through_a_topic_of_its_own(
    broker: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if broker == "kafka":
        url = f"kafka://{request.getfixturevalue('kafka').bootstrap}/two-{uuid.uuid4().hex[:10]}"
    else:
        url = f"{request.getfixturevalue('mosquitto').url}/two-{uuid.uuid4().hex[:10]}"
    embedded = parse_spec(TWO_STREAMS.replace("{folder}", str(tmp_path / "embedded")))
    Runner(embedded, fresh=True).run()
    data = routed(
        yaml.safe_load(TWO_STREAMS.replace("{folder}", str(tmp_path / "through"))),
        Route.parse(url),
        datetime.now(UTC),
    )
    journey = Journey(embedded, parse_spec(yaml.safe_dump(data)), Route.parse(url)).open()
    assert [s for s, _, _ in journey.streams()] == ["north", "south"]
    runner = Runner(journey.spec, sources=journey.sources(), fresh=True)
    with journey.running():
        summary = runner.run()
    assert summary.counters.get("stream:north:lines") == 600 + 240
    assert summary.counters.get("stream:south:lines") == 400
    through = two_streams(tmp_path / "through")
    assert set(through["device_id"]) == {"n1", "n2", "s1"}
    assert_frame_equal(through, two_streams(tmp_path / "embedded"))


def sensorstream(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorstream", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        check=False,
    )


def test_demo_to_mqtt_says_where_it_publishes_and_what_it_reads(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    topic = f"demo-{uuid.uuid4().hex[:10]}"
    done = sensorstream(
        "demo", "weather", "--to", f"{mosquitto.url}/{topic}", "--duration", "3s",
        "--no-serve", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"publishing stream readings to {mosquitto.url}/{topic}/readings/{{device_id}}" in (
        done.stdout
    )
    assert f"the pipeline reads topic filter {topic}/readings/+ at QoS 1" in done.stdout
    assert "accepted" in done.stdout


def test_demo_to_a_bad_address_is_one_error_line(tmp_path: Path) -> None:
    done = sensorstream("demo", "weather", "--to", "amqp://127.0.0.1/x", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert "--to takes mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mqtt://127.0.0.1:9/weather", "cannot reach the MQTT broker at mqtt://127.0.0.1:9"),
        ("kafka://127.0.0.1:9/weather", "cannot reach Kafka at 127.0.0.1:9"),
    ],
)
def test_demo_to_an_unreachable_broker_is_one_error_line(
    url: str, says: str, tmp_path: Path
) -> None:
    done = sensorstream("demo", "weather", "--to", url, "--no-serve", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
