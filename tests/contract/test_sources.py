"""The contract every source in ``SOURCES`` joins by being registered.

For a small sample of each source type (for files: NDJSON, plain and gzipped, CSV, plain
and zstd-compressed, and Parquet, with malformed payloads; for the simulator: a finite,
as-fast-as-possible fleet with every fault; for HTTP: the NDJSON sample posted as requests
of many sizes into an ingest log of small segments, read without following it; for MQTT:
the same lines as messages on topics naming their devices, as received into its log, read
back without connecting; for a scenario feed: the weather stations for ten minutes, some
payloads cut short):

- resuming after any batch's position reads exactly the payloads that follow it, readings,
  dead letters and blank lines alike, in the same order, so that what was read before and
  what is read after add up to one uninterrupted read;
- positions never go backwards;
- every payload of a batch is either a reading or a dead letter;
- the settings build the registered class and round-trip through JSON and the YAML spec.

A new source joins by being added to ``SOURCES``, and fails until it has a sample here.

Files also keep the promise that every line is accounted for: over random NDJSON and CSV
inputs (blank lines, broken and overlong lines, quoted newlines, stray quotes and quoted
fields left open, random chunk sizes, plain or compressed), the batches' lines add up to the
file's own count of lines (of CSV: records after the header, a quoted field's newlines
ending none, a stray quote's line its own record), and resuming after any position reads
exactly the rest. And a bad CSV row, a stray quote in it or not, costs only itself.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from pydantic import ByteSize

from sensorstream.pipeline.spec import PipelineSpec, ReadingsSpec, SourceSettings
from sensorstream.readings import DEAD_LETTER_SCHEMA, Limits, ReadingFormat
from sensorstream.sources import (
    SOURCES,
    FeedSourceSettings,
    FileSource,
    FileSourceSettings,
    HttpSourceSettings,
    MqttSourceSettings,
    SimulatorSourceSettings,
    Source,
    SourceBatch,
    write_dataset,
)
from sensorstream.sources.base import Clock
from sensorstream.sources.feeds import (
    HeartwatchFeedSettings,
    SensorFeedSettings,
    WeatherFeedSettings,
)
from sensorstream.sources.ingest_log import IngestLog
from sensorstream.testing import ManualClock
from tests.contract.kafka_source_sample import Resume, kafka_topic_of

# What write_dataset's malformed rows cannot show: not JSON at all, a reading without a
# time, a blank line (no payload) and a last line without its newline.
EXTRA_LINES = (
    "not json at all\n"
    '{"device_id":"dev-x","temperature":1.5}\n'
    "\n"
    '{"device_id":"dev-y","ts":1700000000000,"temperature":2.5,"humidity":40.0}'
)


def dataset(folder: Path, name: str) -> Path:
    """150 readings of five devices, some malformed, duplicated or out of order."""
    path = folder / name
    write_dataset(
        path,
        devices=5,
        readings=150,
        out_of_order=0.2,
        duplicate_fraction=0.05,
        malformed_fraction=0.05,
        seed=7,
    )
    return path


def ndjson_file(folder: Path) -> SourceSettings:
    path = dataset(folder, "readings.ndjson")
    with path.open("a") as file:
        file.write(EXTRA_LINES)
    return FileSourceSettings(path=path, chunk_bytes=2_000)


def gzipped_ndjson_file(folder: Path) -> SourceSettings:
    plain = ndjson_file(folder)
    assert isinstance(plain, FileSourceSettings)
    path = folder / "readings.ndjson.gz"
    path.write_bytes(gzip.compress(plain.path.read_bytes()))
    return FileSourceSettings(path=path, chunk_bytes=2_000)


# What write_dataset's CSV rows cannot show: a blank line, rows with a field too many and
# too few, a quoted field holding a comma, a quote and a newline, and no final newline.
EXTRA_RECORDS = (
    "\n"
    "dev-x,1700000000000,1.5,40.0,extra\n"
    "dev-x,1700000000000\n"
    '"dev, ""y""",1700000000001,2.5,"4\n0"\n'
    "dev-z,1700000000002,3.5,41.0"
)


def csv_file(folder: Path) -> SourceSettings:
    path = dataset(folder, "readings.csv")
    with path.open("a") as file:
        file.write(EXTRA_RECORDS)
    return FileSourceSettings(path=path, chunk_bytes=1_000)


def zstd_csv_file(folder: Path) -> SourceSettings:
    plain = csv_file(folder)
    assert isinstance(plain, FileSourceSettings)
    path = folder / "readings.csv.zst"
    pa.output_stream(path, compression="zstd").write(plain.path.read_bytes())
    return FileSourceSettings(path=path, chunk_bytes=1_000)


def parquet_file(folder: Path) -> SourceSettings:
    return FileSourceSettings(path=dataset(folder, "readings.parquet"), chunk_rows=25)


def simulated_fleet(folder: Path) -> SourceSettings:
    del folder  # nothing to write: the stream comes from the seed
    return SimulatorSourceSettings(
        devices=4,
        rate_hz=5.0,
        count=150,
        interval=timedelta(seconds=1.5),
        start=datetime(2024, 1, 1, tzinfo=UTC),
        seed=3,
        out_of_order=0.2,
        late_fraction=0.05,
        duplicate_fraction=0.05,
        malformed_fraction=0.05,
    )


def posted_requests(folder: Path) -> SourceSettings:
    """The NDJSON sample as requests of 1 to 29 lines, a second apart, in small segments."""
    plain = ndjson_file(folder)
    assert isinstance(plain, FileSourceSettings)
    lines = plain.path.read_bytes().splitlines(keepends=True)
    arrived = datetime(2024, 6, 1, tzinfo=UTC)
    with IngestLog(folder / "ingest-log", segment_bytes=4_000) as log:
        taken = 0
        while taken < len(lines):
            size = 1 + (taken * 7) % 29
            log.append(b"".join(lines[taken : taken + size]), arrived)
            taken += size
            arrived += timedelta(seconds=1)
    return HttpSourceSettings(
        log_dir=folder / "ingest-log", serve=False, follow=False, batch_bytes=ByteSize(2_000)
    )


def kafka_topic(folder: Path) -> SourceSettings:
    plain = ndjson_file(folder)
    assert isinstance(plain, FileSourceSettings)
    return kafka_topic_of(plain.path.read_bytes().splitlines(keepends=True), folder)


def received_messages(folder: Path) -> SourceSettings:
    """The NDJSON sample as MQTT messages, one a line, synced in groups of 1 to 13, replayed.

    What the source's writer would have appended from a broker: each message tagged with its
    topic (``devices/<n>/telemetry``, which names the device of a payload without one). The
    replay (``follow: false``) reads that log without connecting.
    """
    plain = ndjson_file(folder)
    assert isinstance(plain, FileSourceSettings)
    lines = plain.path.read_bytes().splitlines()
    arrived = datetime(2024, 6, 1, tzinfo=UTC)
    with IngestLog(folder / "mqtt-log", segment_bytes=4_000) as log:
        taken = 0
        while taken < len(lines):
            size = 1 + (taken * 5) % 13
            group = [
                (b"devices/%d/telemetry" % (taken + i), line)
                for i, line in enumerate(lines[taken : taken + size])
            ]
            log.append_tagged(group, arrived)
            taken += size
            arrived += timedelta(seconds=1)
    return MqttSourceSettings(
        url="mqtt://127.0.0.1:9",  # the discard port: a replay never connects
        topics=["devices/+/telemetry"],
        device_id_from_topic="devices/{device_id}/telemetry",
        log_dir=folder / "mqtt-log",
        follow=False,
        batch_bytes=ByteSize(2_000),
    )


def weather_feed(folder: Path) -> SourceSettings:
    """The weather scenario's stations for ten minutes in 7 s batches, 5 % cut short."""
    del folder  # nothing to write: the reports come from the seed
    return FeedSourceSettings(
        feed=WeatherFeedSettings(),
        seed=5,
        start=datetime(2024, 5, 12, 2, 11, 37, tzinfo=UTC),
        duration=timedelta(minutes=10),
        interval=timedelta(seconds=7),
        malformed_fraction=0.05,
    )


def sensor_feed(folder: Path) -> SourceSettings:
    """The sensors scenario's temperature sensor for ten minutes: some twice, late, cut short."""
    del folder
    return FeedSourceSettings(
        feed=SensorFeedSettings(
            duplicate_fraction=0.05, delayed_fraction=0.1, max_delay=timedelta(seconds=40)
        ),
        seed=3,
        start=datetime(2020, 1, 13, 15, 10, tzinfo=UTC),
        duration=timedelta(minutes=10),
        interval=timedelta(seconds=7),
        malformed_fraction=0.05,
    )


def heartwatch_feed(folder: Path) -> SourceSettings:
    """The heartwatch scenario's users (200 of them) for two minutes, two collapsing."""
    del folder
    return FeedSourceSettings(
        feed=HeartwatchFeedSettings(users=200, rate=160, collapse=("42", "7")),
        seed=2,
        start=datetime(2019, 6, 27, 1, tzinfo=UTC),
        duration=timedelta(minutes=2),
        interval=timedelta(seconds=7),
        malformed_fraction=0.05,
    )


HEARTWATCH_FORMAT = ReadingFormat(
    measurements={"heart_rate": "int", "latitude": "float", "longitude": "float"},
    device_field="user_id",
    time_field="timestamp",
    time_unit="ms",
)

SENSOR_FORMAT = ReadingFormat(
    measurements={"value": "int"}, device_field="producer_id", time_field="timestamp"
)

WEATHER_FORMAT = ReadingFormat(
    measurements={"temperature": "float", "humidity": "float"},
    device_field="client",
    time_field="ts",
)


@dataclass(frozen=True)
class Sample:
    """A small instance of a source type: its settings, with any files written to a folder."""

    label: str
    settings: Callable[[Path], SourceSettings]
    # How its payloads are read, when not the contract's own (a feed's field names).
    fmt: ReadingFormat | None = None


SAMPLES: dict[str, tuple[Sample, ...]] = {
    "file": (
        Sample("ndjson", ndjson_file),
        Sample("ndjson-gzip", gzipped_ndjson_file),
        Sample("csv", csv_file),
        Sample("csv-zstd", zstd_csv_file),
        Sample("parquet", parquet_file),
    ),
    "simulator": (Sample("finite", simulated_fleet),),
    "http": (Sample("posted", posted_requests),),
    "kafka": (Sample("topic", kafka_topic),),
    "mqtt": (Sample("received", received_messages),),
    "feed": (
        Sample("weather", weather_feed, WEATHER_FORMAT),
        Sample("sensor", sensor_feed, SENSOR_FORMAT),
        Sample("heartwatch", heartwatch_feed, HEARTWATCH_FORMAT),
    ),
}
"""Samples by the name the source is registered under in ``SOURCES``."""


def missing_sample(name: str) -> Sample:
    def fail(folder: Path) -> NoReturn:
        pytest.fail(
            f"source {name!r} is registered in SOURCES but has no sample: add a factory of a "
            f"small, finite instance to SAMPLES in {Path(__file__).name} so it joins the contract"
        )

    return Sample("no sample", fail)


every_source = pytest.mark.parametrize(
    ("name", "sample"),
    [
        pytest.param(name, sample, id=f"{name}-{sample.label}")
        for name in SOURCES
        for sample in SAMPLES.get(name) or (missing_sample(name),)
    ],
)


def built(name: str, sample: Sample, folder: Path) -> Source:
    """The sample's source, built from its settings as a pipeline builds it."""
    source = sample.settings(folder).build()
    assert isinstance(source, SOURCES[name]), f"{name!r} settings built a {type(source)}"
    return source


def read(
    source: Source,
    fmt: ReadingFormat,
    clock: Clock,
    resume_after: Mapping[int, int] | None = None,
    *,
    batches: int | None = None,
) -> list[SourceBatch]:
    """The batches a read yields (up to ``batches`` of them), skipping "nothing right now"."""
    read_so_far: list[SourceBatch] = []
    if source.dynamic:  # positions come with each assignment, from the runner
        source.listen(Resume(resume_after or {}))
    items = source.read(fmt, resume_after or {}, clock)
    try:
        for item in items:
            if item is None:
                continue
            read_so_far.append(item)
            if len(read_so_far) == batches:
                break
    finally:
        if isinstance(items, Generator):  # stop a reader thread now, not when collected
            items.close()
    return read_so_far


def positions_after(batches: Sequence[SourceBatch]) -> dict[int, int]:
    """Where to resume after these batches: each partition's latest position."""
    return {batch.partition: batch.position for batch in batches}


def read_everything(source: Source, fmt: ReadingFormat, clock: Clock) -> list[SourceBatch]:
    """One uninterrupted read; the sample must be big enough for the contract to mean much."""
    batches = read(source, fmt, clock)
    assert len(batches) >= 3, "a sample should yield several batches"
    assert sum(b.dead_letters.height for b in batches), "a sample should yield dead letters"
    return batches


def readings_of(batches: Sequence[SourceBatch], fmt: ReadingFormat) -> pl.DataFrame:
    return pl.concat([pl.DataFrame(schema=fmt.canonical_schema()), *(b.readings for b in batches)])


def dead_letters_of(batches: Sequence[SourceBatch]) -> pl.DataFrame:
    return pl.concat([pl.DataFrame(schema=DEAD_LETTER_SCHEMA), *(b.dead_letters for b in batches)])


def assert_same_payloads(
    actual: Sequence[SourceBatch], expected: Sequence[SourceBatch], fmt: ReadingFormat, where: str
) -> None:
    """The same readings, dead letters and blank lines in order; batches may be cut otherwise."""
    assert sum(b.payloads for b in actual) == sum(b.payloads for b in expected), where
    assert sum(b.blank for b in actual) == sum(b.blank for b in expected), where
    for what, got, want in (
        ("readings", readings_of(actual, fmt), readings_of(expected, fmt)),
        ("dead letters", dead_letters_of(actual), dead_letters_of(expected)),
    ):
        try:
            assert_frame_equal(got, want, check_exact=True)
        except AssertionError as error:
            raise AssertionError(f"{where}: {what}: {error}") from None


# -- the contract -------------------------------------------------------------------------


@every_source
def test_resuming_after_any_batch_reads_exactly_the_rest(
    name: str, sample: Sample, tmp_path: Path, clock: Clock, reading_format: ReadingFormat
) -> None:
    reading_format = sample.fmt or reading_format
    with closing(built(name, sample, tmp_path)) as source:
        everything = read_everything(source, reading_format, clock)
        for count in range(1, len(everything) + 1):
            head = read(source, reading_format, clock, batches=count)
            rest = read(source, reading_format, clock, positions_after(head))

            where = f"resumed after batch {count} at {positions_after(head)}"
            assert_same_payloads(head, everything[:count], reading_format, where)
            assert_same_payloads(rest, everything[count:], reading_format, where)
            assert_same_payloads([*head, *rest], everything, reading_format, where)


@every_source
def test_positions_never_go_backwards(
    name: str, sample: Sample, tmp_path: Path, clock: Clock, reading_format: ReadingFormat
) -> None:
    reading_format = sample.fmt or reading_format
    with closing(built(name, sample, tmp_path)) as source:
        everything = read_everything(source, reading_format, clock)
        checkpointed = positions_after(everything[: len(everything) // 2])
        resumed = read(source, reading_format, clock, checkpointed)

        # Each batch is past the one before it: at an equal position, resuming after the
        # first would skip the second.
        for batches, start in ((everything, {}), (resumed, checkpointed)):
            latest = dict(start)
            for batch in batches:
                assert batch.partition in source.partitions()
                if batch.partition in latest:
                    assert batch.position > latest[batch.partition], (
                        f"partition {batch.partition}: position {batch.position} "
                        f"after {latest[batch.partition]}"
                    )
                latest[batch.partition] = batch.position


@every_source
def test_every_payload_is_a_reading_or_a_dead_letter(
    name: str, sample: Sample, tmp_path: Path, clock: Clock, reading_format: ReadingFormat
) -> None:
    reading_format = sample.fmt or reading_format
    with closing(built(name, sample, tmp_path)) as source:
        for batch in read_everything(source, reading_format, clock):
            assert batch.payloads == batch.readings.height + batch.dead_letters.height, (
                f"batch at position {batch.position}"
            )


@every_source
def test_the_settings_round_trip_through_json_and_the_pipeline_yaml(
    name: str,
    sample: Sample,
    tmp_path: Path,
    reading_format: ReadingFormat,
    spec_round_trip: Callable[[PipelineSpec], PipelineSpec],
) -> None:
    settings = sample.settings(tmp_path)
    reading_format = sample.fmt or reading_format
    spec = PipelineSpec(
        name="contract",
        source=settings,
        readings=ReadingsSpec(
            measurements=dict(reading_format.measurements), tags=list(reading_format.tags)
        ),
    )

    assert settings.type == name
    assert type(settings).model_validate_json(settings.model_dump_json()) == settings
    assert spec_round_trip(spec).source == settings


# -- files: every line is accounted for ---------------------------------------------------

# Small limits, so that overlong lines are cheap to make: some lie inside a chunk, some
# straddle a grid point and are streamed past.
LIMITS = Limits(max_payload_bytes=150, max_raw_bytes=24)
FILE_FORMAT = ReadingFormat(measurements={"temperature": "float"}, tags=("site",), limits=LIMITS)
T0 = 1_700_000_000_000


def json_line(kind: str, index: int) -> bytes:
    reading = b'{"device_id":"d%d","ts":%d,"temperature":%d.5,"site":"s"}' % (
        index % 3,
        T0 + 1000 * index,
        index,
    )
    lines = {
        "reading": reading,
        "blank": b"",
        "spaces": b" \t ",
        "carriage return": b"\r",
        "not json": b'{"device_id":',
        "no time": b'{"device_id":"x","temperature":1.5}',
        "wrong type": reading.replace(b'"temperature":', b'"temperature":"hot","_":'),
        "long": reading[:-1] + b',"pad":"' + b"x" * (100 + 37 * index) + b'"}',
        "not utf-8": b'{"device_id":"\xff","ts":1700000000000,"temperature":1.0}',
    }
    return lines[kind]


def csv_record(kind: str, index: int) -> bytes:
    reading = b"d%d,%d,%d.5,s" % (index % 3, T0 + 1000 * index, index)
    records = {
        "reading": reading,
        "quoted": b'"d,%d",%d,%d.5,"say ""hi""\nthere"' % (index, T0 + index, index),
        "blank": b"",
        "spaces": b"  ",
        "carriage return": b"\r",
        "extra field": reading + b",x",
        "short": b"d%d,%d" % (index, T0),
        "wrong type": b"d%d,%d,hot,s" % (index, T0),
        "long": reading + b"x" * (140 + 37 * index),
        "not utf-8": b"\xff\xfe,%d,1.5,s" % T0,
        "broken quote": b'd%d,"1"7,1.5,s' % index,
        "stray quote": b'%d" pipe,%d,%d.5,s' % (index, T0 + index, index),
        "quote left open": b'd%d,"oops,%d.5,s' % (index, index),
    }
    return records[kind]


# The kinds of CSV records that are dead letters, each a single line.
BAD_RECORDS = frozenset(
    {"extra field", "short", "wrong type", "long", "not utf-8", "broken quote"}
    | {"stray quote", "quote left open"}
)


@dataclass(frozen=True)
class RandomFile:
    """A random input file: its bytes as stored, its name, and how many lines it holds."""

    name: str
    stored: bytes
    lines: int


@st.composite
def ndjson_files(draw: st.DrawFn) -> RandomFile:
    kinds = st.sampled_from(
        ["reading"] * 4
        + ["blank", "spaces", "carriage return", "not json", "no time", "wrong type", "long"]
        + ["not utf-8"]
    )
    lines = [json_line(kind, i) for i, kind in enumerate(draw(st.lists(kinds, max_size=30)))]
    final = bool(lines) and draw(st.booleans())
    body = b"\n".join(lines) + (b"\n" if final else b"")
    count = body.count(b"\n") + (bool(body) and not body.endswith(b"\n"))
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + body  # Excel's byte-order mark
    return packed("lines.ndjson", data, count, compressed=draw(st.booleans()))


@st.composite
def csv_files(draw: st.DrawFn) -> RandomFile:
    kinds = st.sampled_from(
        ["reading"] * 4
        + ["quoted", "blank", "spaces", "carriage return", "extra field", "short"]
        + ["wrong type", "long", "not utf-8", "broken quote", "stray quote", "quote left open"]
    )
    records = [csv_record(kind, i) for i, kind in enumerate(draw(st.lists(kinds, max_size=30)))]
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    final = bool(records) and draw(st.booleans())
    data = b"device_id,ts,temperature,site" + newline + newline.join(records)
    data += newline if final else b""
    # Without a final newline, an empty last record is no record at all.
    count = len(records) - (bool(records) and not final and records[-1] == b"")
    return packed("records.csv", data, count, compressed=draw(st.booleans()))


def packed(name: str, data: bytes, lines: int, *, compressed: bool) -> RandomFile:
    if compressed:
        return RandomFile(name + ".gz", gzip.compress(data), lines)
    return RandomFile(name, data, lines)


def assert_every_line_accounted_for(file: RandomFile, chunk_bytes: int, resume_at: int) -> None:
    clock = ManualClock(datetime(2024, 6, 1, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / file.name
        path.write_bytes(file.stored)
        source = FileSource(path, chunk_bytes=chunk_bytes, prefetch=0)
        everything = read(source, FILE_FORMAT, clock)
        assert sum(b.lines for b in everything) == file.lines
        for batch in everything:
            assert batch.payloads == batch.readings.height + batch.dead_letters.height
        if not everything:
            return
        for count in sorted({1, resume_at % len(everything) + 1, len(everything)}):
            head = everything[:count]
            rest = read(source, FILE_FORMAT, clock, positions_after(head))
            where = f"resumed after batch {count} at {positions_after(head)}"
            assert_same_payloads(rest, everything[count:], FILE_FORMAT, where)


@given(file=ndjson_files(), chunk_bytes=st.integers(1, 400), resume_at=st.integers(0, 100))
def test_every_ndjson_line_is_accounted_for_and_any_resume_reads_the_rest(
    file: RandomFile, chunk_bytes: int, resume_at: int
) -> None:
    assert_every_line_accounted_for(file, chunk_bytes, resume_at)


@given(file=csv_files(), chunk_bytes=st.integers(1, 400), resume_at=st.integers(0, 100))
def test_every_csv_record_is_accounted_for_and_any_resume_reads_the_rest(
    file: RandomFile, chunk_bytes: int, resume_at: int
) -> None:
    assert_every_line_accounted_for(file, chunk_bytes, resume_at)


@given(
    kinds=st.lists(
        st.sampled_from(["reading", "reading", "quoted", "blank", *sorted(BAD_RECORDS)]),
        max_size=30,
    ),
    newline=st.sampled_from([b"\n", b"\r\n"]),
    chunk_bytes=st.integers(1, 400),
)
def test_a_bad_csv_row_costs_only_itself_stray_quotes_and_all(
    kinds: list[str], newline: bytes, chunk_bytes: int
) -> None:
    records = [csv_record(kind, i) for i, kind in enumerate(kinds)]
    data = b"device_id,ts,temperature,site" + newline + newline.join(records) + newline
    clock = ManualClock(datetime(2024, 6, 1, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.csv"
        path.write_bytes(data)
        batches = read(FileSource(path, chunk_bytes=chunk_bytes, prefetch=0), FILE_FORMAT, clock)
    # A batch's dead letters come as its checks find them, not in row order.
    dead = dead_letters_of(batches).sort(pl.col("origin").str.extract(r"row (\d+)").cast(pl.Int64))
    bad = [i for i, kind in enumerate(kinds) if kind in BAD_RECORDS]
    assert dead["origin"].to_list() == [f"row {i + 1} of rows.csv" for i in bad]
    for letter, index in zip(dead.iter_rows(named=True), bad, strict=True):
        line = records[index] + newline[:-1]  # a CRLF file's record keeps its "\r"
        assert (letter["raw"], letter["raw_length"]) == (line[: LIMITS.max_raw_bytes], len(line))
    good = [i for i, kind in enumerate(kinds) if kind in ("reading", "quoted")]
    assert readings_of(batches, FILE_FORMAT).height == len(good)
