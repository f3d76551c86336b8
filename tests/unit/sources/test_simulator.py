from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat
from sensorstream.sources import (
    SOURCES,
    FeedSource,
    FileSource,
    HttpSource,
    KafkaSource,
    MqttSource,
    SimulatorSource,
    SimulatorSourceSettings,
    SourceBatch,
    write_dataset,
)
from sensorstream.sources.synthetic import DEFAULT_START

FORMAT = ReadingFormat(measurements={"temperature": "float", "humidity": "float"})
NOW = datetime(2024, 6, 1, tzinfo=UTC)


class ManualClock:
    """Processing time that moves only when a test moves it."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def read(
    source: SimulatorSource,
    resume_after: Mapping[int, int] | None = None,
    fmt: ReadingFormat = FORMAT,
) -> list[SourceBatch]:
    with closing(source.read(fmt, resume_after or {}, ManualClock())) as items:
        return [item for item in items if item is not None]


def readings_of(batches: list[SourceBatch]) -> pl.DataFrame:
    return pl.concat([b.readings for b in batches])


def dead_letters_of(batches: list[SourceBatch]) -> pl.DataFrame:
    return pl.concat([b.dead_letters for b in batches])


def faulty(**overrides: object) -> SimulatorSource:
    settings: dict[str, object] = {
        "devices": 6,
        "rate_hz": 4.0,
        "count": 400,
        "interval": "4s",
        "seed": 11,
        "late_fraction": 0.05,
        "duplicate_fraction": 0.05,
        "malformed_fraction": 0.05,
        "anomaly_fraction": 0.02,
    }
    settings.update(overrides)
    return SimulatorSourceSettings.model_validate(settings).build()


def test_the_same_seed_gives_the_same_readings_and_another_seed_others() -> None:
    first = read(faulty())
    again = read(faulty())
    assert_frame_equal(readings_of(first), readings_of(again))
    assert_frame_equal(
        dead_letters_of(first).drop("arrived_at"), dead_letters_of(again).drop("arrived_at")
    )
    other = readings_of(read(faulty(seed=12)))
    assert not other.equals(readings_of(first))


def test_positions_are_batch_numbers_of_the_event_time_interval() -> None:
    batches = read(faulty())
    first = int(DEFAULT_START.timestamp()) // 4  # 4 s batches, numbered from the epoch
    assert [b.position for b in batches] == list(range(first, first + 5))


def test_resuming_after_any_batch_regenerates_exactly_the_rest() -> None:
    source = faulty()
    everything = read(source)
    for index in range(len(everything) - 1):
        rest = read(source, {0: everything[index].position})
        expected = everything[index + 1 :]
        assert [b.position for b in rest] == [b.position for b in expected]
        assert_frame_equal(readings_of(rest), readings_of(expected))
        assert sum(b.payloads for b in rest) == sum(b.payloads for b in expected)


def test_count_limits_the_readings_and_duplicates_come_on_top() -> None:
    batches = read(faulty(count=123, duplicate_fraction=0.2, malformed_fraction=0.0))
    payloads = sum(b.payloads for b in batches)
    readings = readings_of(batches)
    assert readings.height == payloads
    unique = readings.unique(["device_id", "ts"])
    assert unique.height == 123
    assert payloads > 123


def test_duration_bounds_the_scheduled_event_time() -> None:
    source = SimulatorSource(devices=3, rate_hz=10.0, duration=timedelta(seconds=2), out_of_order=0)
    readings = readings_of(read(source))
    assert readings.height == 60
    first, last = readings.select(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    ).row(0)
    assert first >= DEFAULT_START
    assert last < DEFAULT_START + timedelta(seconds=2)


def test_malformed_payloads_become_dead_letters_of_every_kind() -> None:
    batches = read(faulty(malformed_fraction=0.3, count=600, interval="1m"))
    dead = dead_letters_of(batches)
    reasons = " | ".join(dead["reason"].to_list())
    for expected in ("invalid JSON", "missing timestamp", "must be a number", "after its arrival"):
        assert expected in reasons
    assert dead["origin"].str.starts_with("line ").all()
    assert dead["origin"].str.contains("of simulator batch ").all()
    assert sum(b.payloads for b in batches) == readings_of(batches).height + dead.height


def test_out_of_order_readings_lag_by_at_most_max_disorder() -> None:
    source = SimulatorSource(
        devices=20, rate_hz=5.0, count=3000, out_of_order=0.5, max_disorder=timedelta(seconds=2)
    )
    readings = readings_of(read(source))
    lag = readings.select((pl.col("ts").cum_max() - pl.col("ts")).dt.total_microseconds().max())
    assert 0 < lag.item() <= 2_000_000 + 200_000  # plus one report period
    assert (readings["ts"].diff().drop_nulls() < timedelta(0)).any()


def test_late_readings_lag_by_at_least_the_lateness() -> None:
    lateness = timedelta(seconds=30)
    source = SimulatorSource(
        devices=4, rate_hz=1.0, count=2000, out_of_order=0, late_fraction=0.1, lateness=lateness
    )
    readings = readings_of(read(source))
    lag = pl.col("ts").cum_max() - pl.col("ts")
    late = readings.select(lag.alias("lag")).filter(pl.col("lag") > timedelta(seconds=2))
    assert 100 < late.height < 300
    assert late.select(pl.col("lag").min()).item() >= lateness - timedelta(seconds=1)


def test_anomalies_are_spikes_far_outside_the_usual_range() -> None:
    source = faulty(anomaly_fraction=0.05, count=2000, malformed_fraction=0, interval="1m")
    readings = readings_of(read(source))
    outside = readings.filter((pl.col("temperature") - 20).abs() > 14)
    assert 20 < outside.height < 120


def test_live_batches_wait_for_their_interval_to_pass() -> None:
    start = datetime(2024, 6, 1, 12, tzinfo=UTC)
    clock = ManualClock(start)
    source = SimulatorSource(
        devices=20, rate_hz=10.0, live=True, start=start, interval=timedelta(milliseconds=20)
    )
    with closing(source.read(FORMAT, {}, clock)) as items:
        assert next(items) is None  # the first interval has not passed yet
        clock.now = start + timedelta(milliseconds=45)
        ready = [next(items), next(items)]
        assert next(items) is None
    assert all(isinstance(b, SourceBatch) for b in ready)
    times = pl.concat([b.readings for b in ready if b is not None])
    first, last = times.select(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    ).row(0)
    assert first >= start - timedelta(seconds=3)
    assert last < start + timedelta(milliseconds=40)


def test_a_live_stream_started_now_resumes_exactly_later() -> None:
    clock = ManualClock(datetime(2024, 6, 1, 12, tzinfo=UTC))
    source = SimulatorSource(
        devices=30, rate_hz=20.0, live=True, seed=5, interval=timedelta(milliseconds=10)
    )
    with closing(source.read(FORMAT, {}, clock)) as items:
        assert next(items) is None  # started now: the first interval is still to come
        clock.now += timedelta(seconds=1)
        first = [b for b in (next(items) for _ in range(3)) if b is not None]
    assert len(first) == 3
    clock.now += timedelta(minutes=5)  # a restart, much later
    with closing(source.read(FORMAT, {0: first[0].position}, clock)) as items:
        again = [b for b in (next(items) for _ in range(2)) if b is not None]
    assert [b.position for b in again] == [b.position for b in first[1:]]
    for resumed, original in zip(again, first[1:], strict=True):
        assert_frame_equal(resumed.readings, original.readings)


def test_measurements_default_to_what_the_readings_declare() -> None:
    fmt = ReadingFormat(measurements={"pressure": "float", "co2": "int"})
    readings = readings_of(read(SimulatorSource(devices=5, count=50), fmt=fmt))
    assert readings.columns == ["device_id", "ts", "pressure", "co2"]
    assert readings["pressure"].is_between(950, 1080).all()
    assert readings["co2"].dtype == pl.Int64


def test_simulating_nothing_the_readings_declare_is_a_config_error() -> None:
    source = SimulatorSource(measurements=["temperature"], count=10)
    fmt = ReadingFormat(measurements={"vibration": "float"})
    with pytest.raises(ConfigError, match="simulator measures temperature but the readings"):
        read(source, fmt=fmt)


def test_the_reading_format_decides_field_names_units_tags_and_message_ids() -> None:
    fmt = ReadingFormat(
        measurements={"temperature": "float"},
        device_field="sensor",
        time_field="time",
        time_unit="s",
        tags=("site",),
        message_id_field="id",
    )
    source = SimulatorSource(devices=4, count=40, duplicate_fraction=0.3)
    readings = readings_of(read(source, fmt=fmt))
    assert readings.columns == ["device_id", "ts", "temperature", "site", "message_id"]
    assert readings["site"].str.starts_with("site-").all()
    assert readings["message_id"].n_unique() == 40
    assert readings.height > 40


def test_settings_parse_durations_and_check_fractions() -> None:
    settings = SimulatorSourceSettings.model_validate(
        {"type": "simulator", "max_disorder": "500ms", "lateness": "2m", "duration": "1h"}
    )
    assert settings.max_disorder == timedelta(milliseconds=500)
    assert settings.lateness == timedelta(minutes=2)
    assert settings.duration == timedelta(hours=1)
    assert settings.model_dump(mode="json")["max_disorder"] == "500ms"
    with pytest.raises(ValidationError, match="invalid duration"):
        SimulatorSourceSettings.model_validate({"max_disorder": "5 parsecs"})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        SimulatorSourceSettings.model_validate({"malformed_fraction": 2})
    with pytest.raises(ValidationError, match="timezone"):
        SimulatorSourceSettings.model_validate({"start": "2024-01-01T00:00:00"})


def test_invalid_knobs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="devices must be at least 1"):
        SimulatorSource(devices=0)
    with pytest.raises(ConfigError, match="late_fraction is a fraction"):
        SimulatorSource(late_fraction=1.5)
    with pytest.raises(ConfigError, match="start must have a time zone"):
        SimulatorSource(start=datetime(2024, 1, 1))  # noqa: DTZ001 - the mistake under test


def test_the_registry_names_each_source_type() -> None:
    assert {
        "file": FileSource,
        "simulator": SimulatorSource,
        "http": HttpSource,
        "kafka": KafkaSource,
        "mqtt": MqttSource,
        "feed": FeedSource,
    } == SOURCES
    assert isinstance(SimulatorSourceSettings().build(), SOURCES["simulator"])


# --- the dataset writer ---------------------------------------------------------------------


def test_dataset_lines_are_plain_json_readings_in_epoch_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "readings.ndjson"
    assert write_dataset(path, devices=50, readings=1000, seed=2) == 1000
    lines = path.read_text().splitlines()
    assert len(lines) == 1000
    first = json.loads(lines[0])
    assert list(first) == ["device_id", "ts", "temperature", "humidity"]
    assert first["device_id"].startswith("dev-000")
    assert isinstance(first["ts"], int)
    assert 1_700_000_000_000 <= first["ts"] < 1_700_000_100_000
    assert lines[0] == json.dumps(first, separators=(",", ":"))


def test_dataset_disorder_stays_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "readings.ndjson"
    write_dataset(path, devices=100, readings=20_000, out_of_order=0.3, seed=4)
    lag = pl.read_ndjson(path).select((pl.col("ts").cum_max() - pl.col("ts")).max()).item()
    assert 1000 < lag <= 5000


def test_writing_a_large_dataset_is_vectorised(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    assert write_dataset(path, devices=10_000, readings=300_000) == 300_000
    assert FileSource(path).progress_total() == path.stat().st_size


@pytest.mark.parametrize("suffix", [".ndjson", ".csv", ".parquet"])
def test_dataset_faults_survive_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"readings{suffix}"
    written = write_dataset(
        path, devices=20, readings=1000, malformed_fraction=0.05, duplicate_fraction=0.05
    )
    assert written > 1000
    with closing(FileSource(path).read(FORMAT, {}, ManualClock())) as items:
        batches = [b for b in items if b is not None]
    dead = dead_letters_of(batches)
    assert 25 < dead.height < 100
    assert sum(b.payloads for b in batches) == written


def test_an_empty_dataset_is_still_a_valid_file(tmp_path: Path) -> None:
    for suffix in (".ndjson", ".csv", ".parquet"):
        path = tmp_path / f"empty{suffix}"
        assert write_dataset(path, devices=3, readings=0) == 0
        assert path.exists()
    assert pl.read_parquet(tmp_path / "empty.parquet").height == 0


def test_a_negative_number_of_readings_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.ndjson"
    with pytest.raises(ConfigError, match="readings must be zero or more, got -5"):
        write_dataset(path, devices=3, readings=-5)
    assert not path.exists()
