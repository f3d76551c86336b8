"""CSV files read as chunks of records, every record checked before Polars parses the rest.

No record can stop a replay. Positions are byte offsets (in the decompressed bytes of a
compressed file) just past a record, on the fixed grid of :mod:`~sensorstream.sources.grid`,
cut only at record ends outside quotes (RFC 4180: a newline inside a quoted field is part of
it). Within a chunk, NumPy over the positions of newlines, commas and quotes counts each
record's fields; then

- a record of nothing but white space is blank: counted, no payload;
- a record with more or fewer fields than the header is a dead letter (``wrong_field_count``),
  not an abort (extra fields) or a row padded with nulls (missing ones);
- a record longer than ``max_payload_bytes`` is a dead letter (``payload_too_large``);
- the rest are parsed by Polars, every column as text, and decoded by
  :func:`~sensorstream.readings.decode_frame` with their original bytes for dead letters. If
  Polars refuses them (invalid UTF-8, a quote inside an unquoted field), they are parsed in
  pieces and, in a failing piece, one by one, as NDJSON lines are.

Rows are numbered from 1 after the header, blank ones included, so ``row 7 of x.csv`` is the
seventh record after the header (its line, unless quoted fields above it hold newlines).
The header is read and checked by :mod:`~sensorstream.sources.csv_header`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from sensorstream.readings import (
    Decoded,
    Limits,
    ReadingFormat,
    Truncated,
    dead_letters,
    decode_frame,
)
from sensorstream.sources.csv_header import read_header
from sensorstream.sources.file_formats import RawChunk, oversized_dead_letter, too_large_message
from sensorstream.sources.grid import (
    QUOTE,
    count_record_ends,
    cut_stream,
    record_ends,
    skip_to,
)
from sensorstream.sources.streams import PlainStream, open_input

Indexes = npt.NDArray[np.intp]

# What counts as white space in a blank record (a CRLF file's blank line is "\r").
_SPACE = b" \t\r"
_COMMA = 44
# Records per piece when Polars refuses a chunk and it is parsed again in pieces.
_RETRY_PIECE_RECORDS = 2048


@dataclass
class CsvChunk(RawChunk):
    """Whole CSV records from byte offset ``start`` to ``end``; row ``first`` comes first.

    ``ends`` holds the indexes of the record-ending newlines in ``data``; ``oversized``, if
    any, is a record too long to hold that follows ``data`` and ends at ``end``.
    """

    data: bytes
    start: int
    end: int
    first: int
    columns: tuple[str, ...]
    ends: Indexes
    oversized: Truncated | None = None
    done: int | None = None

    @property
    def records(self) -> int:
        """Records in ``data``: one per record end, and a last one the input ended."""
        ends_at_record_end = len(self.ends) and int(self.ends[-1]) == len(self.data) - 1
        return len(self.ends) + (bool(self.data) and not ends_at_record_end)

    def take(self, count: int) -> tuple[RawChunk, RawChunk | None]:
        """Split after the ``count``-th record."""
        if count >= self.records:
            return self, None
        cut = int(self.ends[count - 1]) + 1
        head = CsvChunk(
            self.data[:cut],
            self.start,
            self.start + cut,
            self.first,
            self.columns,
            self.ends[:count],
            None,
            self.done,
        )
        rest = CsvChunk(
            self.data[cut:],
            self.start + cut,
            self.end,
            self.first + count,
            self.columns,
            self.ends[count:] - cut,
            self.oversized,
            self.done,
        )
        return head, rest

    def decode(self, fmt: ReadingFormat, arrived_at: datetime, origin: str) -> Decoded:
        """Check each record, then decode the good ones as readings."""
        data, limits = self.data, fmt.limits
        starts, stops = _bounds(data, self.ends)
        blank = 0
        rejected: list[tuple[int, str, str]] = []  # record index, reason code, message
        parsed = _parse_when_all_fit(data, starts, stops, self.columns, limits)
        if parsed is None:
            blank_rows, rejected, good = self._screen(starts, stops, limits)
            blank = int(blank_rows.sum())
            parsed = _parse_good(data, starts, stops, good, self.columns)
            if parsed is None:
                parsed = _parse_slowly(data, starts, stops, good, self.columns)
        frame, kept, raws, refused = parsed
        rejected = sorted(rejected + refused)
        decoded = decode_frame(
            frame,
            fmt,
            arrived_at=arrived_at,
            origin=origin,
            raws=raws,
            row_numbers=pl.Series(self.first + kept, dtype=pl.Int64),
        )
        parts = [
            dead_letters(
                [data[starts[i] : stops[i]] for i, _, _ in rejected],
                [code for _, code, _ in rejected],
                [message for _, _, message in rejected],
                [f"row {self.first + i} of {origin}" for i, _, _ in rejected],
                arrived_at,
                max_raw_bytes=limits.max_raw_bytes,
            ),
            decoded.dead_letters,
        ]
        if self.oversized is not None:
            where = f"row {self.first + len(starts)} of {origin}"
            parts.append(oversized_dead_letter(self.oversized, where, fmt, arrived_at))
        payloads = decoded.payloads + len(rejected) + (self.oversized is not None)
        return Decoded(decoded.readings, pl.concat(parts), payloads, blank)

    def _screen(
        self, starts: Indexes, stops: Indexes, limits: Limits
    ) -> tuple[npt.NDArray[np.bool_], list[tuple[int, str, str]], Indexes]:
        """Which records are blank, which are dead letters (and why), which are to parse."""
        lengths = stops - starts
        blank = _blank(self.data, starts, stops)
        too_large = ~blank & (lengths > limits.max_payload_bytes)
        fields = _field_counts(self.data, starts, stops)
        wrong = ~blank & ~too_large & (fields != len(self.columns))
        rejected: list[tuple[int, str, str]] = []
        for index in np.flatnonzero(too_large | wrong).tolist():
            if too_large[index]:
                message = too_large_message(int(lengths[index]), limits)
                rejected.append((index, "payload_too_large", message))
            else:
                message = (
                    f"row {self.first + index} has {int(fields[index])} fields, "
                    f"the header has {len(self.columns)}"
                )
                rejected.append((index, "wrong_field_count", message))
        return blank, rejected, np.flatnonzero(~(blank | too_large | wrong))


def _bounds(data: bytes, ends: Indexes) -> tuple[Indexes, Indexes]:
    """Where each record starts and stops (its newline excluded)."""
    stops = ends
    if data and (not len(ends) or int(ends[-1]) != len(data) - 1):
        stops = np.append(ends, len(data))
    starts = np.concatenate(([0], ends + 1))[: len(stops)]
    return starts.astype(np.intp), stops.astype(np.intp)


def _blank(data: bytes, starts: Indexes, stops: Indexes) -> npt.NDArray[np.bool_]:
    """Which records hold nothing but white space."""
    blank: npt.NDArray[np.bool_] = stops == starts
    buf = np.frombuffer(data, dtype=np.uint8)
    # A record is blank only if it starts with white space: few do.
    maybe = np.flatnonzero(~blank)
    maybe = maybe[np.isin(buf[starts[maybe]], list(_SPACE))]
    for index in maybe.tolist():
        blank[index] = not data[starts[index] : stops[index]].strip(_SPACE)
    return blank


def _field_counts(data: bytes, starts: Indexes, stops: Indexes) -> Indexes:
    """Each record's fields: its commas outside quotes, plus one."""
    buf = np.frombuffer(data, dtype=np.uint8)
    commas = buf == _COMMA
    if data.find(b'"') >= 0:
        inside = np.bitwise_xor.accumulate((buf == QUOTE).view(np.uint8))
        commas &= inside == 0
    at = np.flatnonzero(commas)
    counts: Indexes = np.searchsorted(at, stops) - np.searchsorted(at, starts) + 1
    return counts


Parsed = tuple[pl.DataFrame, Indexes, pl.Series, list[tuple[int, str, str]]]


def _parse_when_all_fit(
    data: bytes, starts: Indexes, stops: Indexes, columns: tuple[str, ...], limits: Limits
) -> Parsed | None:
    """Every record parsed at once, if a cheap exact test shows that every one fits.

    Without quotes, a field count is a comma count. Polars refuses a record with more
    fields than the columns; so when it parses one row per record and the commas number
    exactly records x (columns - 1), no record has fewer fields either, and none is blank.
    """
    width = len(columns)
    if not len(starts) or width < 2 or data.find(b'"') >= 0:
        return None
    if int((stops - starts).max()) > limits.max_payload_bytes:
        return None
    commas = np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _COMMA)
    if commas != len(starts) * (width - 1):
        return None
    return _parse_good(data, starts, stops, np.arange(len(starts), dtype=np.intp), columns)


def _parse_good(
    data: bytes, starts: Indexes, stops: Indexes, good: Indexes, columns: tuple[str, ...]
) -> Parsed | None:
    """The good records parsed at once, with their bytes; None if Polars refuses them."""
    # Each record with its newline, so the good ones are one copy of a mask (or no copy).
    spans = np.diff(np.append(starts, len(data)))
    if len(good) == len(starts):
        text = data
    else:
        kept = np.zeros(len(starts), dtype=np.bool_)
        kept[good] = True
        mask = np.repeat(kept, spans)
        text = np.frombuffer(data, dtype=np.uint8)[mask].tobytes()
    frame = _parse(text, columns, len(good))
    if frame is None:
        return None
    offsets = np.concatenate(([0], np.cumsum(spans[good]))).astype(np.int64)
    with_newlines = pl.Series(
        "raw",
        pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(good), [None, pa.py_buffer(offsets.data), pa.py_buffer(text)]
        ),
    )
    lengths = pl.Series("length", stops[good] - starts[good], dtype=pl.Int64)
    raws = (
        pl.DataFrame([with_newlines, lengths])
        .select(pl.col("raw").bin.slice(0, pl.col("length")))
        .to_series()
    )
    return frame, good, raws, []


def _parse_slowly(
    data: bytes, starts: Indexes, stops: Indexes, good: Indexes, columns: tuple[str, ...]
) -> Parsed:
    """The good records parsed in pieces, and a failing piece record by record."""
    frames: list[pl.DataFrame] = [_empty(columns)]
    kept: list[int] = []
    refused: list[tuple[int, str, str]] = []
    for first in range(0, len(good), _RETRY_PIECE_RECORDS):
        indexes = good[first : first + _RETRY_PIECE_RECORDS].tolist()
        records = [data[starts[i] : stops[i]] for i in indexes]
        frame = _parse(b"\n".join(records), columns, len(records))
        if frame is not None:
            frames.append(frame)
            kept += indexes
            continue
        for index, record in zip(indexes, records, strict=True):
            frame = _parse(record, columns, 1)
            if frame is not None:
                frames.append(frame)
                kept.append(index)
            else:
                refused.append((index, *_record_problem(record)))
    raws = pl.Series("raw", [data[starts[i] : stops[i]] for i in kept], dtype=pl.Binary)
    return pl.concat(frames), np.array(kept, dtype=np.intp), raws, refused


def _record_problem(record: bytes) -> tuple[str, str]:
    """Why Polars cannot parse one record that has the right number of fields."""
    try:
        record.decode("utf-8")
    except UnicodeDecodeError as error:
        return "invalid_utf8", f"not valid UTF-8 text: {error.reason} at byte {error.start + 1}"
    return "invalid_csv", (
        "cannot parse the row as CSV: a field with a double quote in it must be quoted "
        'as a whole, its quotes doubled ("say ""hi""")'
    )


def _parse(text: bytes, columns: tuple[str, ...], expected: int) -> pl.DataFrame | None:
    """Records parsed with every column as text; None unless exactly ``expected`` rows."""
    if not expected:
        return _empty(columns)
    try:
        frame = pl.read_csv(text, has_header=False, new_columns=list(columns), infer_schema=False)
    except pl.exceptions.PolarsError:
        return None
    return frame if frame.height == expected and frame.width == len(columns) else None


def _empty(columns: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))


class _RecordCounter:
    """Counts record ends block by block, carrying the quote parity from block to block."""

    def __init__(self) -> None:
        self.parity = 0

    def __call__(self, data: bytes) -> int:
        count, self.parity = count_record_ends(data, self.parity, quoted=True)
        return count


def read_csv_records(
    path: Path, start: int, chunk_bytes: int, limits: Limits
) -> Generator[CsvChunk, None, None]:
    """Chunks of about ``chunk_bytes`` of whole records from byte offset ``start`` on.

    Offset 0 (or anything up to the end of the header) reads from the first record. A
    resumed read counts the records before ``start``, quote-aware, so row numbers stay
    right; a compressed file is decompressed up to ``start`` for it.
    """
    with open_input(path) as stream:
        header, buffered = read_header(stream, path, limits)
        if header is None:
            return
        start = max(start, header.end)
        buffered, rows = skip_to(stream, buffered, header.end, start, _RecordCounter())
        compressed = not isinstance(stream, PlainStream)
        for piece in cut_stream(
            stream,
            start=start,
            buffered=buffered,
            chunk_bytes=chunk_bytes,
            max_record_bytes=limits.max_payload_bytes,
            max_raw_bytes=limits.max_raw_bytes,
            quoted=True,
        ):
            chunk = CsvChunk(
                piece.data,
                piece.start,
                piece.end,
                rows + 1,
                header.columns,
                record_ends(piece.data, quoted=True),
                piece.oversized,
                piece.stored_consumed if compressed else None,
            )
            yield chunk
            rows += chunk.records + (piece.oversized is not None)
