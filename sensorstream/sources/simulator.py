"""Simulated devices: a deterministic, resumable stream of JSON payloads, live or at full speed.

Batch ``i`` holds the reports due in the event time ``[i * interval, (i + 1) * interval)``
counted from the Unix epoch, generated from a random stream seeded by ``(seed, i)`` alone.
A batch's position is its number ``i``, so resuming after position ``i`` regenerates exactly
the batches that followed it. The payloads are real JSON lines decoded by
:func:`~sensorstream.readings.decode_json_lines`, so malformed ones become dead letters
just as a real device's would.

:func:`write_dataset` writes the same kind of readings to a file, for replay and benchmarks.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import polars as pl
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sensorstream.durations import Duration
from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat, decode_json_lines
from sensorstream.readings.format import PATH_SEPARATOR
from sensorstream.sources.base import Clock, Identity, Source, SourceBatch
from sensorstream.sources.file_formats import EXTENSIONS, FileFormat
from sensorstream.sources.prefetch import prefetch
from sensorstream.sources.synthetic import (
    DEFAULT_MEASUREMENTS,
    DEFAULT_START,
    MALFORMED,
    Faults,
    Fleet,
    mix_seed,
)
from sensorstream.sources.synthetic_payloads import (
    EpochUnit,
    Layout,
    break_rows,
    json_lines,
    payloads,
    write_json_lines,
)

__all__ = ["SimulatorSource", "SimulatorSourceSettings", "write_dataset"]

LIVE_INTERVAL = timedelta(milliseconds=200)
# An as-fast-as-possible batch holds about this many readings: big enough to decode
# efficiently, small enough to keep memory and latency low.
_READINGS_PER_BATCH = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SimulatorSource(Source):
    """A fleet of simulated devices sending JSON readings, with configurable imperfections.

    Args:
        devices: How many devices report.
        rate_hz: Reports a second, per device.
        measurements: What each device measures; by default what the reading format
            declares. ``temperature``, ``humidity``, ``pressure`` and ``co2`` behave like
            the real thing, ``lat``/``lon`` are each device's fixed position in a city (for
            maps), other names drift around 50.
        out_of_order: Fraction of readings whose event time lags by up to ``max_disorder``.
        max_disorder: The largest lag of an out-of-order reading.
        late_fraction: Fraction of readings whose event time lags by ``lateness`` to twice it.
        lateness: How late a late reading is, at least.
        duplicate_fraction: Fraction of payloads sent twice.
        malformed_fraction: Fraction of payloads broken: invalid JSON, no time, text for a
            number, NaN, or a time years ahead.
        anomaly_fraction: Fraction of readings with one measurement spiking by 5 to 10 spreads.
        seed: The same seed gives the same readings.
        start: Event time of the first reading; by default now (live) or 2023-11-14 22:13:20
            UTC (not live). Set it to resume a live stream with a ``duration`` or ``count``
            exactly as it was.
        live: True paces batches by the clock, each sent once its interval has passed; False
            sends them as fast as possible.
        duration: Stop after this much event time from ``start``.
        count: Stop after this many readings (duplicates not counted).
        interval: Event time per batch; by default 200 ms live, else about 50,000 readings.
    """

    name = "simulator"

    def __init__(
        self,
        devices: int = 100,
        rate_hz: float = 1.0,
        measurements: Sequence[str] | None = None,
        *,
        out_of_order: float = 0.05,
        max_disorder: timedelta = timedelta(seconds=3),
        late_fraction: float = 0.0,
        lateness: timedelta = timedelta(seconds=60),
        duplicate_fraction: float = 0.0,
        malformed_fraction: float = 0.0,
        anomaly_fraction: float = 0.0,
        seed: int = 0,
        start: datetime | None = None,
        live: bool = False,
        duration: timedelta | None = None,
        count: int | None = None,
        interval: timedelta | None = None,
    ) -> None:
        self.faults = Faults(
            out_of_order=out_of_order,
            max_disorder=max_disorder,
            late_fraction=late_fraction,
            lateness=lateness,
            duplicate_fraction=duplicate_fraction,
            malformed_fraction=malformed_fraction,
            anomaly_fraction=anomaly_fraction,
        )
        self.devices, self.rate_hz, self.seed = devices, rate_hz, seed
        self.measurements = tuple(measurements) if measurements else None
        self.start, self.live, self.duration, self.count = start, live, duration, count
        if start is not None and start.utcoffset() is None:
            msg = f"start must have a time zone (e.g. 2024-01-01T00:00:00Z), got {start}"
            raise ConfigError(msg)
        if duration is not None and duration <= timedelta(0):
            msg = f"duration must be above 0, got {duration}"
            raise ConfigError(msg)
        if count is not None and count < 0:
            msg = f"count must not be negative, got {count}"
            raise ConfigError(msg)
        if interval is None:
            if live:
                interval = LIVE_INTERVAL
            else:
                seconds = _READINGS_PER_BATCH / (max(devices, 1) * max(rate_hz, 1e-9))
                interval = timedelta(milliseconds=round(min(3600.0, max(0.2, seconds)) * 1000))
        if interval < timedelta(microseconds=1):
            msg = f"interval must be at least 1us, got {interval}"
            raise ConfigError(msg)
        self.interval_us = _micros(interval)
        self._fleet = self._make_fleet(self.measurements or DEFAULT_MEASUREMENTS)

    def identity(self) -> Identity:
        """The settings that generate the stream (as JSON): equal settings, equal batches.

        Resuming a checkpoint of other settings (another seed, more devices) would mix two
        streams, so the runner compares them: by equality, :meth:`Source.compare`'s default.
        """
        faults = {
            field.name: _json_value(getattr(self.faults, field.name))
            for field in dataclasses.fields(self.faults)
        }
        return {
            "devices": self.devices,
            "rate_hz": self.rate_hz,
            "measurements": list(self.measurements) if self.measurements else None,
            **faults,
            "seed": self.seed,
            "start": _json_value(self.start),
            "live": self.live,
            "duration": _json_value(self.duration),
            "count": self.count,
            "interval_us": self.interval_us,
        }

    def _make_fleet(self, measurements: Sequence[str]) -> Fleet:
        return Fleet(self.devices, self.rate_hz, measurements, self.seed, self.faults)

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        """Yield batch after batch from just after batch number ``resume_after[0]``."""
        fleet, layout = self._fleet_for(fmt), Layout.of(fmt)
        if self.start is not None:
            origin_us = _epoch_us(self.start)
        else:
            origin_us = _epoch_us(clock() if self.live else DEFAULT_START)
        # A live stream started "now" cannot know when an earlier run started: it resumes
        # exactly, and counts its duration and count from this run's start.
        pinned = self.start is not None or not self.live
        resumed = 0 in resume_after
        first = resume_after[0] + 1 if resumed else origin_us // self.interval_us
        floor_us = origin_us if pinned or not resumed else None
        end_us = None if self.duration is None else origin_us + _micros(self.duration)
        sent = fleet.count(origin_us, first * self.interval_us) if pinned and resumed else 0
        for batch in itertools.count(first):
            low, high = batch * self.interval_us, (batch + 1) * self.interval_us
            low = low if floor_us is None else max(low, floor_us)
            high = high if end_us is None else min(high, end_us)
            if end_us is not None and low >= end_us:
                return
            if self.count is not None and sent >= self.count:
                return
            if self.live:
                yield from self._wait_until(high, clock)
            limit = None if self.count is None else self.count - sent
            schedule = fleet.schedule(low, high, limit)
            sent += schedule.height
            generated = fleet.readings(schedule, mix_seed(self.seed, batch))
            data = json_lines(payloads(generated, layout, fleet.measurements), layout)
            decoded = decode_json_lines(
                data, fmt, arrived_at=clock(), origin=f"simulator batch {batch}"
            )
            yield SourceBatch(
                partition=0,
                position=batch,
                readings=decoded.readings,
                dead_letters=decoded.dead_letters,
                payloads=decoded.payloads,
                blank=decoded.blank,
            )

    def _fleet_for(self, fmt: ReadingFormat) -> Fleet:
        """The fleet for a reading format: declared measurements first (those get broken)."""
        named = (*fmt.measurements, *fmt.tags)
        moved = [
            where
            for column, where in fmt.fields().items()
            if PATH_SEPARATOR in where or (column in named and where != column)
        ]
        if moved:
            msg = (
                f"the simulator writes flat readings, each measurement and tag under its own "
                f"name, so it cannot fill the field {moved[0]!r}; read such records from a "
                "file (source: {type: file, ...})"
            )
            raise ConfigError(msg)
        declared = list(fmt.measurements)
        names = list(self.measurements or declared)
        if not set(names) & set(declared):
            msg = (
                f"the simulator measures {', '.join(names)} but the readings declare "
                f"{', '.join(declared)}; set source.measurements or readings.measurements"
            )
            raise ConfigError(msg)
        ordered = [n for n in names if n in declared] + [n for n in names if n not in declared]
        if tuple(ordered) == self._fleet.measurements:
            return self._fleet
        return self._make_fleet(ordered)

    def _wait_until(self, due_us: int, clock: Clock) -> Iterator[None]:
        """Sleep until the clock reaches ``due_us``, yielding None whenever it is still early."""
        while (left_us := due_us - _epoch_us(clock())) > 0:
            time.sleep(min(left_us, self.interval_us) / 1e6)
            if _epoch_us(clock()) < due_us:
                yield None


class SimulatorSourceSettings(BaseModel):
    """A :class:`SimulatorSource` as written under ``source:`` in a pipeline YAML.

    >>> SimulatorSourceSettings(devices=3, live=True, max_disorder="500ms").max_disorder
    datetime.timedelta(microseconds=500000)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["simulator"] = "simulator"
    devices: int = Field(default=100, ge=1)
    rate_hz: float = Field(default=1.0, gt=0)
    measurements: tuple[str, ...] | None = None
    out_of_order: float = Field(default=0.05, ge=0, le=1)
    max_disorder: Duration = timedelta(seconds=3)
    late_fraction: float = Field(default=0.0, ge=0, le=1)
    lateness: Duration = timedelta(seconds=60)
    duplicate_fraction: float = Field(default=0.0, ge=0, le=1)
    malformed_fraction: float = Field(default=0.0, ge=0, le=1)
    anomaly_fraction: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0
    start: AwareDatetime | None = None
    live: bool = False
    duration: Duration | None = None
    count: int | None = Field(default=None, ge=0)
    interval: Duration | None = None

    def build(self) -> SimulatorSource:
        """The source these settings describe (every field but ``type`` is a keyword of it)."""
        return SimulatorSource(**{name: value for name, value in self if name != "type"})


def write_dataset(
    path: str | Path,
    devices: int = 1000,
    readings: int = 100_000,
    *,
    rate_hz: float = 1.0,
    measurements: Sequence[str] = DEFAULT_MEASUREMENTS,
    out_of_order: float = 0.05,
    max_disorder: timedelta = timedelta(seconds=5),
    late_fraction: float = 0.0,
    lateness: timedelta = timedelta(seconds=60),
    duplicate_fraction: float = 0.0,
    malformed_fraction: float = 0.0,
    anomaly_fraction: float = 0.0,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    time_unit: EpochUnit = "ms",
    format: FileFormat | None = None,
) -> int:
    """Write simulated readings to an NDJSON, CSV or Parquet file (by its extension).

    Readings are in report order, their event times (``ts``, epoch milliseconds by default)
    disordered by up to ``max_disorder``; the knobs mean what they mean for
    :class:`SimulatorSource`. In CSV and Parquet, malformed rows are the kinds a typed table
    can hold (a missing device id or time, no measurements, NaN, a far-future time).
    Returns the rows written, duplicates included.

    >>> write_dataset("readings.ndjson", devices=10_000, readings=5_000_000)  # doctest: +SKIP
    5000000
    """
    path = Path(path)
    if readings < 0:
        msg = f"readings must be zero or more, got {readings}"
        raise ConfigError(msg)
    chosen = format or EXTENSIONS.get(path.suffix.lower())
    if chosen is None:
        msg = f"cannot tell the format of {path}: name it .ndjson, .csv or .parquet"
        raise ConfigError(msg)
    if start.utcoffset() is None:
        msg = f"start must have a time zone (e.g. 2024-01-01T00:00:00Z), got {start}"
        raise ConfigError(msg)
    faults = Faults(
        out_of_order=out_of_order,
        max_disorder=max_disorder,
        late_fraction=late_fraction,
        lateness=lateness,
        duplicate_fraction=duplicate_fraction,
        malformed_fraction=malformed_fraction,
        anomaly_fraction=anomaly_fraction,
    )
    fleet = Fleet(devices, rate_hz, measurements, seed, faults)
    layout = Layout(time_unit=time_unit)
    # Blocks of about half a million readings: vectorised work, bounded memory.
    span_us = max(fleet.period_us, math.ceil(500_000 / (devices * rate_hz) * 1e6))

    def blocks() -> Generator[pl.DataFrame, None, None]:
        low, produced = _epoch_us(start), 0
        for block in itertools.count():
            schedule = fleet.schedule(low, low + span_us, readings - produced)
            yield payloads(fleet.readings(schedule, mix_seed(seed, block)), layout, measurements)
            produced += schedule.height
            low += span_us
            if produced >= readings:
                return

    path.parent.mkdir(parents=True, exist_ok=True)
    with _DatasetWriter(path, chosen, layout) as writer:
        # The next block is generated while this one is written.
        return sum(writer.write(block) for block in prefetch(blocks(), depth=1))


class _DatasetWriter:
    """Appends blocks of payload rows to one NDJSON, CSV or Parquet file."""

    def __init__(self, path: Path, format: FileFormat, layout: Layout) -> None:
        self.path, self.format, self.layout = path, format, layout
        self.handle: BinaryIO | None = None
        self.parquet: pq.ParquetWriter | None = None
        if format != "parquet":
            self.handle = path.open("wb")

    def write(self, frame: pl.DataFrame) -> int:
        if self.format == "ndjson" and self.handle is not None:
            write_json_lines(frame, self.layout, self.handle)
            return frame.height
        table = break_rows(frame, self.layout) if frame[MALFORMED].is_not_null().any() else frame
        table = table.drop(MALFORMED, strict=False)
        if self.handle is not None:
            table.write_csv(self.handle, include_header=self.handle.tell() == 0)
            return frame.height
        arrow = table.to_arrow()
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.path, arrow.schema)
        self.parquet.write_table(arrow)
        return frame.height

    def __enter__(self) -> _DatasetWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.parquet is not None:
            self.parquet.close()


def _json_value(value: object) -> object:
    """A setting as JSON keeps it: durations in microseconds, times in ISO 8601."""
    if isinstance(value, timedelta):
        return _micros(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def _epoch_us(moment: datetime) -> int:
    return _micros(moment - _EPOCH)
