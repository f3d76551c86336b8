"""Cutting NDJSON, CSV and Parquet files into chunks of raw payloads, each knowing its position.

A chunk is read but not yet decoded: it knows where it starts and ends (a byte offset for
NDJSON, a row count for CSV and Parquet), the line or row number of its first payload
(data rows count from 1, after any header), how to split itself (for paced replay) and how
to decode itself through
:func:`~sensorstream.readings.decode_json_lines` or :func:`~sensorstream.readings.decode_frame`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

import polars as pl
import pyarrow.parquet as pq

from sensorstream.readings import Decoded, ReadingFormat, decode_frame, decode_json_lines
from sensorstream.readings.scanner import count_newlines

FileFormat = Literal["ndjson", "csv", "parquet"]

EXTENSIONS: dict[str, FileFormat] = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Block size for counting the lines before a resume offset: large reads, no per-line work.
_COUNT_BLOCK = 16 * 1024 * 1024


class RawChunk(ABC):
    """Payloads read but not decoded: from position ``start`` (before) to ``end`` (after)."""

    start: int
    end: int
    first: int  # line or row number (from 1) of the first payload

    @abstractmethod
    def take(self, count: int) -> tuple[RawChunk, RawChunk | None]:
        """Split off the first ``count`` lines or rows; the rest is None when nothing is left."""

    @abstractmethod
    def decode(self, fmt: ReadingFormat, arrived_at: datetime, origin: str) -> Decoded:
        """Decode the payloads into readings and dead letters."""


@dataclass
class LinesChunk(RawChunk):
    """Whole lines of an NDJSON file, the last one ending at ``end`` (a byte offset)."""

    data: bytes
    start: int
    end: int
    first: int

    def take(self, count: int) -> tuple[RawChunk, RawChunk | None]:
        """Split after the ``count``-th line."""
        cut = 0
        for _ in range(count):
            found = self.data.find(b"\n", cut)
            if found < 0:
                return self, None
            cut = found + 1
        if cut >= len(self.data):
            return self, None
        head = LinesChunk(self.data[:cut], self.start, self.start + cut, self.first)
        rest = LinesChunk(self.data[cut:], self.start + cut, self.end, self.first + count)
        return head, rest

    def decode(self, fmt: ReadingFormat, arrived_at: datetime, origin: str) -> Decoded:
        """Decode the lines as JSON readings, numbering them from ``first``."""
        return decode_json_lines(
            self.data, fmt, arrived_at=arrived_at, origin=origin, first_line=self.first
        )


@dataclass
class RowsChunk(RawChunk):
    """Rows of a CSV or Parquet file: rows ``start`` to ``end`` (exclusive), counted from 0."""

    frame: pl.DataFrame
    start: int
    end: int
    first: int

    def take(self, count: int) -> tuple[RawChunk, RawChunk | None]:
        """Split after the ``count``-th row."""
        if count >= self.frame.height:
            return self, None
        head = RowsChunk(self.frame.head(count), self.start, self.start + count, self.first)
        rest = RowsChunk(self.frame.slice(count), self.start + count, self.end, self.first + count)
        return head, rest

    def decode(self, fmt: ReadingFormat, arrived_at: datetime, origin: str) -> Decoded:
        """Decode the rows as readings, numbering them from ``first``."""
        frame = _temporal_time_as_iso(self.frame, fmt.time_field)
        return decode_frame(frame, fmt, arrived_at=arrived_at, origin=origin, first_row=self.first)


# Bytes read past a grid point to find the end of the line that straddles it.
_TAIL_READ = 64 * 1024


def read_lines(path: Path, start: int, chunk_bytes: int) -> Generator[LinesChunk, None, None]:
    """Chunks of about ``chunk_bytes`` of whole lines from byte offset ``start`` on.

    Chunks lie on a fixed grid: a chunk starting at offset p ends at the first line start at
    or after the next multiple of ``chunk_bytes`` above p. So a replay resumed at any chunk
    end cuts exactly the same chunks as an uninterrupted one, and every float sum is added
    up in the same order: results after a crash are identical to the bit. A final line
    without a newline is read too; a line longer than ``chunk_bytes`` makes a chunk of its own.
    Each chunk is found first and then read in one call, so its bytes are copied only once.
    """
    with path.open("rb") as handle:
        line = 1 + _count_newlines(handle, start)
        offset = start
        while True:
            end = _line_end_after(handle, (offset // chunk_bytes + 1) * chunk_bytes - 1)
            handle.seek(offset)
            chunk = handle.read(end - offset)
            if not chunk:
                return
            yield LinesChunk(chunk, offset, offset + len(chunk), line)
            offset += len(chunk)
            line += count_newlines(chunk)


def _line_end_after(handle: BinaryIO, position: int) -> int:
    """The offset just past the first newline at or after ``position``, or the file's end."""
    handle.seek(position)
    while block := handle.read(_TAIL_READ):
        found = block.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(block)
    return handle.tell()


def _count_newlines(handle: BinaryIO, end: int) -> int:
    """Lines before byte ``end``, so that line numbers stay right after a resume."""
    count, remaining = 0, end
    while remaining > 0:
        block = handle.read(min(_COUNT_BLOCK, remaining))
        if not block:
            break
        count += count_newlines(block)
        remaining -= len(block)
    return count


def read_csv_rows(path: Path, start: int, chunk_rows: int) -> Generator[RowsChunk, None, None]:
    """Chunks of ``chunk_rows`` rows (every column as text) from data row ``start`` on."""
    frames = pl.scan_csv(path, infer_schema=False, skip_rows_after_header=start).collect_batches(
        chunk_size=chunk_rows
    )
    position = start
    for frame in frames:
        if frame.height:
            yield RowsChunk(frame, position, position + frame.height, position + 1)
            position += frame.height


def read_parquet_rows(path: Path, start: int, chunk_rows: int) -> Generator[RowsChunk, None, None]:
    """Chunks of at most ``chunk_rows`` rows from row ``start`` on, skipping whole row groups."""
    parquet = pq.ParquetFile(path)
    try:
        groups: list[int] = []
        skip, group_start = 0, 0
        for index in range(parquet.num_row_groups):
            group_end = group_start + parquet.metadata.row_group(index).num_rows
            if group_end > start:
                if not groups:
                    skip = start - group_start
                groups.append(index)
            group_start = group_end
        position = start
        for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=groups):
            frame = pl.DataFrame(batch)
            if skip:
                dropped = min(skip, frame.height)
                frame, skip = frame.slice(dropped), skip - dropped
            if frame.height:
                yield RowsChunk(frame, position, position + frame.height, position + 1)
                position += frame.height
    finally:
        parquet.close()


def parquet_row_count(path: Path) -> int:
    """Rows in a Parquet file, from its footer."""
    parquet = pq.ParquetFile(path)
    try:
        return parquet.metadata.num_rows
    finally:
        parquet.close()


def _temporal_time_as_iso(frame: pl.DataFrame, time_field: str) -> pl.DataFrame:
    """Give a timestamp-typed time column (Parquet) as ISO 8601 text, which decoding reads."""
    if time_field not in frame.columns:
        return frame
    dtype = frame.schema[time_field]
    if not isinstance(dtype, pl.Datetime):
        return frame
    column = pl.col(time_field)
    utc = (
        column.dt.replace_time_zone("UTC")
        if dtype.time_zone is None
        else column.dt.convert_time_zone("UTC")
    )
    return frame.with_columns(utc.dt.to_string("%Y-%m-%dT%H:%M:%S%.f+00:00").alias(time_field))
