from __future__ import annotations

import gzip
import time
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from sensorstream.errors import ConfigError, SourceError
from sensorstream.readings import ReadingFormat
from sensorstream.sources import FileSource, FileSourceSettings, SourceBatch, write_dataset
from sensorstream.sources.file_formats import read_lines
from sensorstream.sources.files import Pace, next_piece_size
from tests.unit.sources.helpers import clock, read_all

FORMAT = ReadingFormat(measurements={"temperature": "float", "humidity": "float"})
T0_MS = 1_700_000_000_000


def read(source: FileSource, resume_after: Mapping[int, int] | None = None) -> list[SourceBatch]:
    return read_all(source, FORMAT, resume_after)


def readings_of(batches: list[SourceBatch]) -> pl.DataFrame:
    return pl.concat([b.readings for b in batches])


def dead_letters_of(batches: list[SourceBatch]) -> pl.DataFrame:
    return pl.concat([b.dead_letters for b in batches])


def line(device: int, ts_ms: int, temperature: float = 20.0) -> str:
    return (
        f'{{"device_id":"dev-{device}","ts":{ts_ms},"temperature":{temperature},"humidity":50.0}}'
    )


@pytest.fixture
def ndjson(tmp_path: Path) -> Path:
    """60 readings, a few broken lines and a blank one, 100 ms apart."""
    lines = [line(i % 3, T0_MS + 100 * i, 20 + i / 10) for i in range(60)]
    lines[7] = '{"device_id":"dev-1","ts":'  # broken JSON
    lines[19] = '{"device_id":"dev-1","temperature":1.0}'  # no time
    lines[33] = ""
    lines[41] = line(2, T0_MS, 20).replace("20", '"hot"', 1)  # text for a number
    path = tmp_path / "readings.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ndjson_is_read_in_chunks_cut_at_newlines(ndjson: Path) -> None:
    batches = read(FileSource(ndjson, chunk_bytes=300))
    assert len(batches) > 5
    assert [b.position for b in batches] == sorted({b.position for b in batches})
    assert batches[-1].position == ndjson.stat().st_size
    data = ndjson.read_bytes()
    assert all(data[b.position - 1 : b.position] == b"\n" for b in batches)
    assert readings_of(batches).height == 56
    assert sum(b.payloads for b in batches) == 59  # the blank line is no payload


def test_chunk_size_does_not_change_what_is_read(ndjson: Path) -> None:
    whole = read(FileSource(ndjson))
    assert len(whole) == 1
    assert_frame_equal(readings_of(read(FileSource(ndjson, chunk_bytes=97))), whole[0].readings)


def test_malformed_lines_become_dead_letters_with_their_line_numbers(ndjson: Path) -> None:
    dead = dead_letters_of(read(FileSource(ndjson, chunk_bytes=250))).sort("origin")
    assert dead["origin"].to_list() == [
        "line 20 of readings.ndjson",
        "line 42 of readings.ndjson",
        "line 8 of readings.ndjson",
    ]
    reasons = " | ".join(dead["reason"].to_list())
    assert "invalid JSON" in reasons
    assert "missing timestamp" in reasons
    assert "must be a number" in reasons
    assert dead["raw"][2] == b'{"device_id":"dev-1","ts":'


@pytest.mark.parametrize("chunk_bytes", [300, 1000, 1 << 20])
def test_resuming_after_any_position_reads_exactly_the_rest(ndjson: Path, chunk_bytes: int) -> None:
    source = FileSource(ndjson, chunk_bytes=chunk_bytes)
    everything = read(source)
    for index, batch in enumerate(everything[:-1]):
        rest = read(source, {0: batch.position})
        expected = everything[index + 1 :]
        # Chunks are cut from where reading starts, so only the content must match.
        assert rest[-1].position == expected[-1].position
        assert_frame_equal(readings_of(rest), readings_of(expected))
        assert_frame_equal(dead_letters_of(rest), dead_letters_of(expected))


def test_reading_half_then_resuming_gives_the_same_readings(ndjson: Path) -> None:
    source = FileSource(ndjson, chunk_bytes=200)
    everything = read(source)
    with closing(source.read(FORMAT, {}, clock)) as items:
        first_half = [next(items) for _ in range(len(everything) // 2)]
    assert all(b is not None for b in first_half)
    last = first_half[-1]
    assert last is not None
    second_half = read(source, {0: last.position})
    halves = [b for b in first_half if b is not None] + second_half
    assert_frame_equal(readings_of(halves), readings_of(everything))
    assert_frame_equal(dead_letters_of(halves), dead_letters_of(everything))


def test_final_line_without_a_newline_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "last.ndjson"
    path.write_text(line(1, T0_MS) + "\n" + line(2, T0_MS + 1))
    batches = read(FileSource(path, chunk_bytes=10))
    assert readings_of(batches)["device_id"].to_list() == ["dev-1", "dev-2"]
    assert batches[-1].position == path.stat().st_size


def test_a_line_longer_than_a_chunk_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.ndjson"
    path.write_text(line(1, T0_MS) + "\n" + line(2, T0_MS + 1) + "\n")
    batches = read(FileSource(path, chunk_bytes=8))
    assert [b.readings.height for b in batches] == [1, 1]


def test_resuming_at_the_end_reads_nothing(ndjson: Path) -> None:
    assert read(FileSource(ndjson), {0: ndjson.stat().st_size}) == []


def test_progress_total_is_the_file_size_for_ndjson(ndjson: Path) -> None:
    source = FileSource(ndjson, chunk_bytes=500)
    assert source.progress_total() == ndjson.stat().st_size
    assert {b.total for b in read(source)} == {ndjson.stat().st_size}


def test_without_prefetch_the_same_batches_come_out(ndjson: Path) -> None:
    ahead = read(FileSource(ndjson, chunk_bytes=300, prefetch=2))
    inline = read(FileSource(ndjson, chunk_bytes=300, prefetch=0))
    assert [b.position for b in ahead] == [b.position for b in inline]
    assert_frame_equal(readings_of(ahead), readings_of(inline))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_give_the_same_readings_as_ndjson(tmp_path: Path, suffix: str) -> None:
    for name in ("readings.ndjson", f"readings{suffix}"):
        write_dataset(tmp_path / name, devices=7, readings=500, seed=3)
    expected = readings_of(read(FileSource(tmp_path / "readings.ndjson")))
    path = tmp_path / f"readings{suffix}"
    batches = read(FileSource(path, chunk_rows=64, chunk_bytes=2_000))
    assert len(batches) == 8 if suffix == ".parquet" else len(batches) > 5
    # Parquet counts rows; CSV, like NDJSON, counts bytes.
    assert batches[-1].position == (500 if suffix == ".parquet" else path.stat().st_size)
    assert_frame_equal(readings_of(batches), expected)


def test_parquet_resumes_after_any_row_count(tmp_path: Path) -> None:
    path = tmp_path / "readings.parquet"
    frame = pl.read_ndjson(write_ndjson_dataset(tmp_path, readings=100))
    frame.write_parquet(path, row_group_size=30)  # row groups cut across chunks
    source = FileSource(path, chunk_rows=17)
    everything = read(source)
    for index, batch in enumerate(everything[:-1]):
        rest = read(source, {0: batch.position})
        assert rest[-1].position == everything[-1].position
        assert_frame_equal(readings_of(rest), readings_of(everything[index + 1 :]))
    assert_frame_equal(
        readings_of(read(source, {0: 45})), readings_of(everything).slice(45), check_dtypes=True
    )


def test_csv_resumes_after_any_batch_at_its_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    write_dataset(path, devices=5, readings=100, seed=1)
    source = FileSource(path, chunk_bytes=400)
    everything = read(source)
    assert len(everything) > 5
    data = path.read_bytes()
    for index, batch in enumerate(everything[:-1]):
        assert data[batch.position - 1 : batch.position] == b"\n"
        rest = read(source, {0: batch.position})
        assert rest[-1].position == everything[-1].position
        assert_frame_equal(readings_of(rest), readings_of(everything[index + 1 :]))


def write_ndjson_dataset(folder: Path, readings: int) -> Path:
    path = folder / "source.ndjson"
    write_dataset(path, devices=5, readings=readings, seed=1)
    return path


def test_progress_total_is_the_row_count_for_parquet_and_the_size_for_csv(tmp_path: Path) -> None:
    write_dataset(tmp_path / "r.parquet", devices=3, readings=42)
    write_dataset(tmp_path / "r.csv", devices=3, readings=42)
    assert FileSource(tmp_path / "r.parquet").progress_total() == 42
    assert FileSource(tmp_path / "r.csv").progress_total() == (tmp_path / "r.csv").stat().st_size


def test_bad_csv_rows_become_dead_letters_with_their_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(
        "device_id,ts,temperature,humidity\n"
        f"dev-1,{T0_MS},20.5,40\n"
        f"dev-1,{T0_MS + 1},warm,40\n"
        f"dev-2,,21.0,41\n"
        f"dev-2,{T0_MS + 3},21.5,\n"
    )
    batches = read(FileSource(path, chunk_bytes=60))
    assert len(batches) > 1
    assert readings_of(batches)["temperature"].to_list() == [20.5, 21.5]
    dead = dead_letters_of(batches).sort("origin")
    assert dead["origin"].to_list() == ["row 2 of readings.csv", "row 3 of readings.csv"]
    assert "warm" in dead["reason"][0]
    assert "missing timestamp" in dead["reason"][1]


def test_a_parquet_timestamp_column_is_read_as_event_time(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    times = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=s) for s in (0, 1.5)]
    table = pa.table(
        {
            "device_id": ["a", "b"],
            "ts": pa.array(times, pa.timestamp("ms", tz="UTC")),
            "temperature": [1.0, 2.0],
        }
    )
    pq.write_table(table, path)
    readings = readings_of(read(FileSource(path)))
    assert readings["ts"].to_list() == times


def test_a_missing_file_raises_a_source_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.ndjson"
    with pytest.raises(SourceError, match=r"nowhere\.ndjson: no such file"):
        FileSource(missing)
    with pytest.raises(SourceError, match=r"nowhere\.ndjson"):
        FileSourceSettings(path=missing).build()


def test_a_file_removed_before_reading_raises_a_source_error(ndjson: Path) -> None:
    source = FileSource(ndjson)
    ndjson.unlink()
    with pytest.raises(SourceError, match=r"cannot read .*readings.ndjson"):
        read(source)


def test_the_format_comes_from_the_extension_or_must_be_given(tmp_path: Path) -> None:
    path = tmp_path / "readings.txt"
    path.write_text(line(1, T0_MS) + "\n")
    with pytest.raises(ConfigError, match="set format: ndjson, csv or parquet"):
        FileSource(path)
    assert readings_of(read(FileSource(path, "ndjson"))).height == 1


def test_settings_build_the_source_they_describe(ndjson: Path) -> None:
    settings = FileSourceSettings.model_validate({"type": "file", "path": str(ndjson), "speed": 4})
    source = settings.build()
    assert (source.path, source.format, source.speed) == (ndjson, "ndjson", 4.0)
    with pytest.raises(ValidationError, match="greater than 0"):
        FileSourceSettings.model_validate({"path": str(ndjson), "speed": 0})
    with pytest.raises(ValidationError, match="Extra inputs"):
        FileSourceSettings.model_validate({"path": str(ndjson), "sped": 2})


# --- recorded-speed replay ------------------------------------------------------------------


class FakeTime:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def batch_at(*seconds: float) -> pl.DataFrame:
    times = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=s) for s in seconds]
    return pl.DataFrame({"ts": times}, schema={"ts": pl.Datetime("us", "UTC")})


def test_pace_waits_event_time_over_speed_and_starts_at_once() -> None:
    fake = FakeTime()
    pace = Pace(speed=2.0, monotonic=fake.monotonic, sleep=fake.sleep)
    assert pace.observe(batch_at(0.5, 1.0)) == 0
    assert list(pace.wait()) == []
    assert pace.observe(batch_at(0.9, 3.0)) == 2_000_000  # the latest moved by 2 s
    waits = list(pace.wait())
    assert sum(fake.slept) == pytest.approx(1.0)  # 2 s of event time at twice the speed
    assert len(waits) == len(fake.slept) - 1  # None while still early, not after the last sleep
    assert pace.observe(batch_at(2.0)) == 0  # out of order: never holds the replay back
    assert list(pace.wait()) == []


def test_piece_sizes_follow_event_time_towards_one_pacing_interval() -> None:
    assert next_piece_size(100, advance_us=0, target_us=1e5) == 200
    assert next_piece_size(100, advance_us=1_000_000, target_us=1e5) == 25
    assert next_piece_size(100, advance_us=50_000, target_us=1e5) == 200
    assert next_piece_size(1, advance_us=10**9, target_us=1.0) == 1


@pytest.fixture
def two_seconds(tmp_path: Path) -> Path:
    """400 readings over 2 s of event time, 5 ms apart, some out of order."""
    times = [T0_MS + 5 * i - (40 if i % 9 == 0 else 0) for i in range(400)]
    path = tmp_path / "recorded.ndjson"
    path.write_text("".join(line(i % 4, t) + "\n" for i, t in enumerate(times)))
    return path


def test_replay_at_recorded_speed_takes_event_time_over_speed(two_seconds: Path) -> None:
    started = time.monotonic()
    batches = read(FileSource(two_seconds, speed=40.0))
    elapsed = time.monotonic() - started
    # All but the first piece waits for its event time: about 2 s / 40.
    assert elapsed >= 1.5 / 40.0
    assert len(batches) > 1  # split into pieces so the output is smooth
    assert_frame_equal(readings_of(batches), readings_of(read(FileSource(two_seconds))))


def test_a_paced_replay_resumes_exactly_after_any_piece(two_seconds: Path) -> None:
    source = FileSource(two_seconds, speed=1e6, chunk_bytes=4000)
    everything = read(source)
    assert len(everything) > 3
    for index in (0, len(everything) // 2, len(everything) - 2):
        rest = read(source, {0: everything[index].position})
        assert_frame_equal(readings_of(rest), readings_of(everything[index + 1 :]))


def test_paced_csv_splits_chunks_at_record_ends(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    write_dataset(path, devices=4, readings=300, rate_hz=50.0)
    batches = read(FileSource(path, speed=1e6, chunk_bytes=4_000))
    positions = [b.position for b in batches]
    assert positions == sorted(positions)
    assert len(batches) > 4
    assert positions[-1] == path.stat().st_size
    data = path.read_bytes()
    assert all(data[p - 1 : p] == b"\n" for p in positions)
    assert sum(b.payloads for b in batches) == 300
    assert_frame_equal(readings_of(batches), readings_of(read(FileSource(path))))


def test_a_resumed_replay_cuts_the_same_chunks_as_an_uninterrupted_one(tmp_path: Path) -> None:
    path = tmp_path / "lines.ndjson"
    path.write_bytes(b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 37)) for i in range(2000)))
    full = [(c.start, c.end) for c in read_lines(path, 0, 1000)]
    for resume_at in (full[3][1], full[17][1], full[-2][1]):
        resumed = [(c.start, c.end) for c in read_lines(path, resume_at, 1000)]
        assert resumed == [span for span in full if span[0] >= resume_at]


@pytest.mark.parametrize(
    ("size", "speed", "loads"),
    [(300_000, None, True), (1_000, None, False), (300_000, 2.0, False)],
)
def test_prepare_starts_loading_the_scanner_only_for_a_big_fast_ndjson_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, speed: float | None, loads: bool
) -> None:
    calls: list[None] = []
    monkeypatch.setattr("sensorstream.sources.files.preload", lambda: calls.append(None))
    line = b'{"device_id":"d","ts":1700000000000,"temperature":1.5}\n'
    path = tmp_path / "r.ndjson"
    path.write_bytes(line * (size // len(line) + 1))
    FileSource(path, speed=speed).prepare(ReadingFormat(measurements={"temperature": "float"}))
    assert bool(calls) == loads


def test_prepare_leaves_a_vanished_file_to_reading_to_report(tmp_path: Path) -> None:
    path = tmp_path / "gone.ndjson"
    path.write_text(line(1, T0_MS) + "\n")
    source = FileSource(path)
    path.unlink()
    source.prepare(FORMAT)  # no error here
    with pytest.raises(SourceError, match="cannot read"):
        read(source)


@pytest.mark.parametrize("compressed", [False, True])
def test_a_byte_order_mark_at_the_start_of_ndjson_is_skipped(
    tmp_path: Path, compressed: bool
) -> None:
    data = b"\xef\xbb\xbf" + (line(1, T0_MS) + "\n" + line(2, T0_MS + 1) + "\n").encode()
    path = tmp_path / ("bom.ndjson.gz" if compressed else "bom.ndjson")
    path.write_bytes(gzip.compress(data) if compressed else data)
    source = FileSource(path, chunk_bytes=40)
    batches = read(source)
    assert readings_of(batches)["device_id"].to_list() == ["dev-1", "dev-2"]
    assert dead_letters_of(batches).height == 0
    assert batches[0].position > 3
    assert readings_of(read(source, {0: batches[0].position}))["device_id"].to_list() == ["dev-2"]


ZURICH = ReadingFormat(measurements={"temperature": "float"}, time_zone="Europe/Zurich")


def test_csv_times_without_a_zone_are_read_in_the_declared_zone(tmp_path: Path) -> None:
    path = tmp_path / "weather.csv"
    path.write_text(
        "device_id,ts,temperature\n"
        "st-1,2024-05-12 02:11:37,11.5\n"  # summer: +02:00
        "st-1,2024-01-15T12:00:00,2.0\n"  # winter: +01:00
        "st-1,2024-05-12T02:11:37Z,11.5\n"  # its own zone wins
        "st-1,2024-03-31 02:30:00,3.0\n"  # skipped by the clocks
    )
    batches = read_all(FileSource(path), ZURICH)
    assert readings_of(batches)["ts"].to_list() == [
        datetime(2024, 5, 12, 0, 11, 37, tzinfo=UTC),
        datetime(2024, 1, 15, 11, tzinfo=UTC),
        datetime(2024, 5, 12, 2, 11, 37, tzinfo=UTC),
    ]
    dead = dead_letters_of(batches)
    assert dead.select("reason_code", "origin").rows() == [
        ("nonexistent_local_time", "row 4 of weather.csv")
    ]


def test_a_parquet_timestamp_without_a_zone_is_read_in_the_declared_zone(tmp_path: Path) -> None:
    path = tmp_path / "weather.parquet"
    naive = [datetime(2024, 5, 12, 2, 11, 37), datetime(2024, 1, 15, 12)]  # noqa: DTZ001
    pl.DataFrame(
        {"device_id": ["st-1", "st-1"], "ts": naive, "temperature": [11.5, 2.0]}
    ).write_parquet(path)
    assert pl.read_parquet_schema(path)["ts"] == pl.Datetime("us")
    expected = [datetime(2024, 5, 12, 0, 11, 37, tzinfo=UTC), datetime(2024, 1, 15, 11, tzinfo=UTC)]
    assert readings_of(read_all(FileSource(path), ZURICH))["ts"].to_list() == expected
    in_utc = ReadingFormat(measurements={"temperature": "float"})
    assert readings_of(read_all(FileSource(path), in_utc))["ts"].to_list() == [
        t.replace(tzinfo=UTC) for t in naive
    ]
