"""Readings from a file (NDJSON, CSV or Parquet), as fast as possible or at the recorded pace.

A batch's position is what to resume *after*: for NDJSON and CSV the byte offset just past
the batch's last line or record (in the decompressed bytes of a gzip or zstd file), for
Parquet the number of rows consumed. The next chunk is read and decoded in a background
thread while the caller processes the current one. Each checkpoint records the file's
identity (:mod:`~sensorstream.sources.file_identity`), so a replaced file is not resumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from sensorstream.errors import ConfigError, SourceError
from sensorstream.readings import TS, ReadingFormat
from sensorstream.readings.scanner import MIN_CHUNK_BYTES, preload, supports
from sensorstream.sources.base import Clock, Identity, InputChange, Source, SourceBatch
from sensorstream.sources.csv_records import check_fields, read_csv_records
from sensorstream.sources.file_formats import (
    FileFormat,
    RawChunk,
    check_readable,
    format_of,
    parquet_row_count,
    read_lines,
    read_parquet_rows,
)
from sensorstream.sources.file_identity import compare_file, file_identity
from sensorstream.sources.prefetch import prefetch

# 16 MiB (about 200,000 W1 readings) ran W1 about 15% faster than 8 MiB, and 32 MiB no faster:
# the engine's costs per batch (merging window state, probing the dedup seen-set) weigh less.
DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
DEFAULT_CHUNK_ROWS = 100_000
# Wall time between the batches of a paced replay: short enough to look smooth.
PACE_INTERVAL_S = 0.1
# Lines or rows per decoded piece of a paced replay: the first (small, since it is sent at
# once) and the most; sizes in between follow the event time each piece covers.
_FIRST_PIECE, _MAX_PIECE = 16, 65_536


class FileSource(Source):
    """Reads one file of readings; its one partition's position is a byte offset or a row count.

    NDJSON and CSV files may be compressed with gzip or zstd, told by their first bytes
    (``readings.ndjson.gz`` is NDJSON, and so is a gzip file named ``readings.ndjson``).

    Args:
        path: The file to read.
        format: ``ndjson``, ``csv`` or ``parquet``; by default from the file's extension
            (a ``.gz``, ``.zst`` or ``.zstd`` after it aside).
        speed: None replays as fast as possible; ``k`` replays at the recorded pace times
            ``k``, by the readings' event time (``2.0``: twice as fast as recorded).
        chunk_bytes: About how many bytes of NDJSON or CSV to decode at once.
        chunk_rows: How many Parquet rows to decode at once.
        prefetch: How many chunks to read ahead in a background thread (0: none).
    """

    name = "file"

    def __init__(
        self,
        path: str | Path,
        format: FileFormat | None = None,
        *,
        speed: float | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        prefetch: int = 2,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            reason = "it is a folder" if self.path.is_dir() else "no such file"
            msg = f"cannot read {self.path}: {reason}"
            raise SourceError(msg)
        self.format: FileFormat = format or format_of(self.path)
        check_readable(self.path, self.format)
        if speed is not None and not speed > 0:
            msg = f"speed must be above 0 (or None for as fast as possible), got {speed}"
            raise ConfigError(msg)
        if chunk_bytes <= 0 or chunk_rows <= 0:
            msg = f"chunk_bytes and chunk_rows must be above 0, got {chunk_bytes}, {chunk_rows}"
            raise ConfigError(msg)
        self.speed = speed
        self.chunk_bytes = chunk_bytes
        self.chunk_rows = chunk_rows
        self.prefetch_depth = prefetch

    def prepare(self, fmt: ReadingFormat) -> None:
        """Check a CSV header holds the nested fields; load the NDJSON scanner if it will scan.

        A CSV file holds a nested field flattened, in a column named like its dotted path,
        or not at all: that is a ConfigError now, not a dead letter for every row. The
        scanner is loaded for a big NDJSON file read as fast as possible.
        """
        if self.format == "csv":
            check_fields(self.path, fmt)
        if self.format != "ndjson" or self.speed is not None or not supports(fmt):
            return
        try:
            size = self.path.stat().st_size
        except OSError:
            return  # reading will say what is wrong with the file
        if size >= 4 * MIN_CHUNK_BYTES:
            preload()

    def progress_total(self) -> int | None:
        """The file size in bytes as stored (NDJSON, CSV), or its row count (Parquet).

        For a compressed file the size is of the compressed bytes, and batches report
        progress in them (``done``), since positions count decompressed bytes.
        """
        try:
            if self.format == "parquet":
                return parquet_row_count(self.path)
            return self.path.stat().st_size
        except (OSError, pa.ArrowException) as error:
            raise _read_error(self.path, error) from error

    def identity(self) -> Identity:
        """The file's size, mtime, hashes of its first and last 64 KiB, and resolved path."""
        try:
            return file_identity(self.path)
        except OSError as error:
            raise _read_error(self.path, error) from error

    def compare(self, recorded: Mapping[str, Any]) -> InputChange | None:
        """Whether the file is the one ``recorded``, has grown, or changed (and how)."""
        try:
            return compare_file(self.path, recorded)
        except OSError as error:
            raise _read_error(self.path, error) from error

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        """Yield batches from just after ``resume_after[0]`` (a byte offset or a row count)."""
        start = resume_after.get(0, 0)
        total = self.progress_total()

        def decode(chunk: RawChunk) -> SourceBatch:
            decoded = chunk.decode(fmt, clock(), self.path.name)
            return SourceBatch(
                partition=0,
                position=chunk.end,
                readings=decoded.readings,
                dead_letters=decoded.dead_letters,
                payloads=decoded.payloads,
                total=total,
                blank=decoded.blank,
                done=chunk.done,
            )

        try:
            if self.speed is None:
                decoded = (decode(chunk) for chunk in self._chunks(start, fmt))
                yield from prefetch(decoded, self.prefetch_depth, name=f"read {self.path.name}")
            else:
                chunks = prefetch(
                    self._chunks(start, fmt), self.prefetch_depth, f"read {self.path.name}"
                )
                yield from _paced(chunks, decode, Pace(self.speed))
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as error:
            raise _read_error(self.path, error) from error

    def _chunks(self, start: int, fmt: ReadingFormat) -> Generator[RawChunk, None, None]:
        limits = fmt.limits
        if self.format == "ndjson":
            return read_lines(
                self.path, start, self.chunk_bytes, limits.max_payload_bytes, limits.max_raw_bytes
            )
        if self.format == "csv":
            return read_csv_records(self.path, start, self.chunk_bytes, limits)
        check_readable(self.path, self.format)
        return read_parquet_rows(self.path, start, self.chunk_rows)


class Pace:
    """Holds a replay to the recorded pace: event time advanced / speed = wall time elapsed.

    The replay starts at once: the first batch's latest event time is matched to the wall
    time it was seen. Event time advances with the latest reading seen so far, so readings
    out of order never hold a replay back.
    """

    def __init__(
        self,
        speed: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.speed = speed
        self.monotonic = monotonic
        self.sleep = sleep
        self.anchor: tuple[int, float] | None = None  # (event time in us, wall time in s)
        self.frontier_us: int | None = None

    @property
    def event_us_per_interval(self) -> float:
        """How much event time one pacing interval of wall time replays."""
        return PACE_INTERVAL_S * 1e6 * self.speed

    def observe(self, readings: pl.DataFrame) -> int:
        """Take in a batch's event times; returns how far (us) the latest event time moved."""
        if readings.height == 0:
            return 0
        latest = readings.select(pl.col(TS).dt.epoch("us").max()).item()
        if latest is None:
            return 0
        if self.frontier_us is None:
            self.frontier_us = latest
            self.anchor = (latest, self.monotonic())
            return 0
        advance = max(0, latest - self.frontier_us)
        self.frontier_us += advance
        return int(advance)

    def seconds_to_wait(self) -> float:
        """Wall time until the event time seen so far is due."""
        if self.anchor is None or self.frontier_us is None:
            return 0.0
        anchor_us, anchor_wall = self.anchor
        due = anchor_wall + (self.frontier_us - anchor_us) / 1e6 / self.speed
        return due - self.monotonic()

    def wait(self) -> Iterator[None]:
        """Sleep until due, yielding None every interval it still has to wait (for idle work)."""
        while (left := self.seconds_to_wait()) > 0:
            self.sleep(min(left, PACE_INTERVAL_S))
            if self.seconds_to_wait() > 0:
                yield None


def _paced(
    chunks: Iterator[RawChunk], decode: Callable[[RawChunk], SourceBatch], pace: Pace
) -> Iterator[SourceBatch | None]:
    """Decode chunks in pieces of about one pacing interval of event time, each on time."""
    size = _FIRST_PIECE
    for chunk in chunks:
        rest: RawChunk | None = chunk
        while rest is not None:
            piece, rest = rest.take(size)
            batch = decode(piece)
            size = next_piece_size(size, pace.observe(batch.readings), pace.event_us_per_interval)
            yield from pace.wait()
            yield batch


def next_piece_size(size: int, advance_us: int, target_us: float) -> int:
    """Lines or rows for the next piece, so that it covers about ``target_us`` of event time.

    >>> next_piece_size(1000, advance_us=50_000, target_us=100_000.0)
    2000
    """
    factor = 2.0 if advance_us <= 0 else min(4.0, max(0.25, target_us / advance_us))
    return min(_MAX_PIECE, max(1, round(size * factor)))


def _read_error(path: Path, error: BaseException) -> SourceError:
    if isinstance(error, OSError) and error.strerror:
        detail = error.strerror
    else:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return SourceError(f"cannot read {path}: {detail}")


class FileSourceSettings(BaseModel):
    """A :class:`FileSource` as written under ``source:`` in a pipeline YAML.

    >>> FileSourceSettings(path=Path("readings.csv"), speed=2.0).type
    'file'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["file"] = "file"
    path: Path
    format: FileFormat | None = None
    speed: float | None = Field(default=None, gt=0)
    chunk_bytes: int = Field(default=DEFAULT_CHUNK_BYTES, gt=0)
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, gt=0)

    def build(self) -> FileSource:
        """The source these settings describe; raises SourceError if the file is missing."""
        return FileSource(
            self.path,
            self.format,
            speed=self.speed,
            chunk_bytes=self.chunk_bytes,
            chunk_rows=self.chunk_rows,
        )
