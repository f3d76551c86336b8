"""Cutting NDJSON, CSV and Parquet files into chunks of raw payloads, each knowing its position.

A chunk is read but not yet decoded: it knows where it starts and ends (a byte offset for
NDJSON and CSV, in the decompressed bytes of a compressed file; a row count for Parquet),
the line or row number of its first payload (data rows count from 1, after any header), how
to split itself (for paced replay) and how to decode itself through
:func:`~sensorstream.readings.decode_json_lines` or :func:`~sensorstream.readings.decode_frame`.
CSV records are cut and checked in :mod:`~sensorstream.sources.csv_records`.
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

from sensorstream.errors import ConfigError, SourceError
from sensorstream.readings import (
    Decoded,
    Limits,
    ReadingFormat,
    Truncated,
    dead_letters,
    decode_frame,
    decode_json_lines,
)
from sensorstream.readings.scanner import count_newlines
from sensorstream.readings.tables import iso_text
from sensorstream.sources.grid import BLOCK, LINES, cut_stream, grid_point, skip_to, stream_past
from sensorstream.sources.streams import (
    BOM,
    PlainStream,
    compression_of,
    open_input,
    without_compression_suffix,
)

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


def format_of(path: Path) -> FileFormat:
    """A file's format by its name, a compression suffix aside (``r.ndjson.gz`` is NDJSON).

    A compressed Parquet file is refused: Parquet needs random access, and compresses its
    columns itself.
    """
    named = without_compression_suffix(path)
    found = EXTENSIONS.get(named.suffix.lower())
    if found is None:
        allowed = ", ".join(sorted(EXTENSIONS))
        msg = (
            f"cannot tell the format of {path} from its extension; name it {allowed} "
            "(optionally with .gz or .zst after it) or set format: ndjson, csv or parquet"
        )
        raise ConfigError(msg)
    return found


def check_readable(path: Path, format: FileFormat) -> None:
    """Refuse what cannot be read as ``format``: a compressed Parquet file, a lying suffix."""
    compression = compression_of(path)
    if compression is not None and format == "parquet":
        msg = (
            f"cannot read {path}: Parquet cannot be read through {compression}, since it "
            "needs random access (and compresses its columns itself); decompress the file "
            "first and point the source at the .parquet file"
        )
        raise SourceError(msg)


class RawChunk(ABC):
    """Payloads read but not decoded: from position ``start`` (before) to ``end`` (after)."""

    start: int
    end: int
    first: int  # line or row number (from 1) of the first payload
    done: int | None  # progress in stored (compressed) bytes, when it differs from ``end``

    @abstractmethod
    def take(self, count: int) -> tuple[RawChunk, RawChunk | None]:
        """Split off the first ``count`` lines or rows; the rest is None when nothing is left."""

    @abstractmethod
    def decode(self, fmt: ReadingFormat, arrived_at: datetime, origin: str) -> Decoded:
        """Decode the payloads into readings and dead letters."""


@dataclass
class LinesChunk(RawChunk):
    """Whole lines of an NDJSON file, the last one ending at ``end`` (a byte offset).

    ``oversized`` is a line too long to hold that follows ``data`` (and ends at ``end``):
    it becomes a dead letter.
    """

    data: bytes
    start: int
    end: int
    first: int
    oversized: Truncated | None = None
    done: int | None = None

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
        head = LinesChunk(
            self.data[:cut], self.start, self.start + cut, self.first, None, self.done
        )
        rest = LinesChunk(
            self.data[cut:],
            self.start + cut,
            self.end,
            self.first + count,
            self.oversized,
            self.done,
        )
        return head, rest

    def decode(self, fmt: ReadingFormat, arrived_at: datetime, origin: str) -> Decoded:
        """Decode the lines as JSON readings, numbering them from ``first``."""
        decoded = decode_json_lines(
            self.data, fmt, arrived_at=arrived_at, origin=origin, first_line=self.first
        )
        if self.oversized is None:
            return decoded
        number = self.first + count_newlines(self.data)
        dead = oversized_dead_letter(self.oversized, f"line {number} of {origin}", fmt, arrived_at)
        return Decoded(
            decoded.readings,
            pl.concat([decoded.dead_letters, dead]),
            decoded.payloads + 1,
            decoded.blank,
        )


def oversized_dead_letter(
    record: Truncated, origin: str, fmt: ReadingFormat, arrived_at: datetime
) -> pl.DataFrame:
    """The dead letter of a payload too long to hold, streamed past by the reader."""
    return dead_letters(
        [record],
        ["payload_too_large"],
        [too_large_message(record.length, fmt.limits)],
        [origin],
        arrived_at,
        max_raw_bytes=fmt.limits.max_raw_bytes,
    )


def too_large_message(length: int, limits: Limits) -> str:
    """Why a payload of ``length`` bytes is a dead letter, as the JSON checks say it too."""
    return (
        f"payload of {length:,} bytes is longer than {limits.max_payload_bytes:,} "
        "(readings.limits.max_payload_bytes)"
    )


@dataclass
class RowsChunk(RawChunk):
    """Rows of a Parquet file: rows ``start`` to ``end`` (exclusive), counted from 0."""

    frame: pl.DataFrame
    start: int
    end: int
    first: int
    done: int | None = None

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


# Bytes read past a grid point at a time, to find the end of the line that straddles it.
_TAIL_READ = 64 * 1024


def read_lines(
    path: Path,
    start: int,
    chunk_bytes: int,
    max_line_bytes: int = Limits.max_payload_bytes,
    max_raw_bytes: int = Limits.max_raw_bytes,
) -> Generator[LinesChunk, None, None]:
    """Chunks of about ``chunk_bytes`` of whole lines from byte offset ``start`` on.

    Chunks lie on the fixed grid of :mod:`~sensorstream.sources.grid`: a chunk starting at
    offset p ends at the first line end at or after the next multiple of ``chunk_bytes``
    above p. So a replay resumed at any chunk end cuts exactly the same chunks as an
    uninterrupted one, and every float sum is added up in the same order: results after a
    crash are identical to the bit. A final line without a newline is read too; a line that
    straddles a grid point and runs on past ``max_line_bytes`` beyond it is streamed past,
    never held (its chunk carries it as ``oversized``). A UTF-8 byte-order mark at the start
    is skipped.

    A plain file's chunk is found first and then read in one call, so its bytes are copied
    only once. A compressed file (:mod:`~sensorstream.sources.streams`) is cut on the same
    grid of its decompressed bytes, read sequentially; offsets are decompressed offsets, and
    resuming decompresses from the start up to ``start`` (correct, not fast).
    """
    with open_input(path) as stream:
        head = stream.read(len(BOM))
        start = max(start, len(BOM) if head == BOM else 0)
        if isinstance(stream, PlainStream):
            yield from _plain_lines(path, start, chunk_bytes, max_line_bytes, max_raw_bytes)
            return
        buffered, line = skip_to(stream, head, 0, start, count_newlines)
        for piece in cut_stream(
            stream,
            start=start,
            buffered=buffered,
            chunk_bytes=chunk_bytes,
            max_record_bytes=max_line_bytes,
            max_raw_bytes=max_raw_bytes,
            records=LINES,
        ):
            yield LinesChunk(
                piece.data,
                piece.start,
                piece.end,
                1 + line,
                piece.oversized,
                piece.stored_consumed,
            )
            line += count_newlines(piece.data) + (piece.oversized is not None)


def _plain_lines(
    path: Path, start: int, chunk_bytes: int, max_line_bytes: int, max_raw_bytes: int
) -> Generator[LinesChunk, None, None]:
    with path.open("rb") as handle:
        line = 1 + _count_newlines(handle, start)
        offset = start
        while True:
            grid = grid_point(offset, chunk_bytes)
            end = _line_end_after(handle, grid - 1, grid + max_line_bytes)
            if end is None:  # the straddling line is too long to hold
                chunk = _oversized_line(handle, offset, grid, line, max_raw_bytes)
            else:
                handle.seek(offset)
                data = handle.read(end - offset)
                if not data:
                    return
                chunk = LinesChunk(data, offset, offset + len(data), line)
            yield chunk
            offset = chunk.end
            line += count_newlines(chunk.data) + (chunk.oversized is not None)


def _line_end_after(handle: BinaryIO, position: int, limit: int) -> int | None:
    """The offset just past the first newline at or after ``position``, or the file's end.

    None if there is no newline before ``limit`` and the file goes on past it.
    """
    handle.seek(position)
    while position <= limit and (block := handle.read(min(_TAIL_READ, limit + 1 - position))):
        found = block.find(b"\n", 0, limit - position)
        if found >= 0:
            return position + found + 1
        position += len(block)
    if position > limit:
        return None
    return handle.tell()


def _oversized_line(
    handle: BinaryIO, offset: int, grid: int, line: int, max_raw_bytes: int
) -> LinesChunk:
    """The lines from ``offset`` up to the long line straddling ``grid``, and that line."""
    handle.seek(offset)
    block = handle.read(grid - 1 - offset)
    line_start = block.rfind(b"\n") + 1
    record, _, newline = stream_past(
        block[line_start:],
        lambda: handle.read(BLOCK),
        max_raw_bytes=max_raw_bytes,
    )
    end = offset + line_start + record.length + newline
    return LinesChunk(block[:line_start], offset, end, line, record)


def _count_newlines(handle: BinaryIO, size: int) -> int:
    """Lines in the next ``size`` bytes, so that line numbers stay right after a resume."""
    count, remaining = 0, size
    while remaining > 0:
        block = handle.read(min(_COUNT_BLOCK, remaining))
        if not block:
            break
        count += count_newlines(block)
        remaining -= len(block)
    return count


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
    return frame.with_columns(iso_text(pl.col(time_field), dtype).alias(time_field))
