"""CSV files read as chunks of records, every record checked before Polars parses the rest.

No record can stop a replay. Positions are byte offsets (in the decompressed bytes of a
compressed file) just past a record, on the fixed grid of :mod:`~sensorstream.sources.grid`,
cut at record ends as :mod:`~sensorstream.sources.csv_split` tells them: at newlines, except
inside a well-formed quoted field (RFC 4180), so a stray quote costs only its own line.
Within a chunk, NumPy over the positions of newlines, commas and quotes counts each
record's fields; then

- a record of nothing but white space is blank: counted, no payload;
- a record longer than ``max_payload_bytes`` is a dead letter (``payload_too_large``);
- a record with an odd number of double quotes (one that no later line closed into a
  record) is a dead letter (``invalid_csv``): a quote left open;
- a record with more or fewer fields than the header is a dead letter (``wrong_field_count``),
  not an abort (extra fields) or a row padded with nulls (missing ones);
- the rest are parsed by Polars, every column as text, and decoded by
  :func:`~sensorstream.readings.decode_frame` with their original bytes for dead letters. If
  Polars refuses them (invalid UTF-8, a quote inside an unquoted field), they are parsed in
  pieces and, in a failing piece, one by one, as NDJSON lines are.

Rows are numbered from 1 after the header, blank ones included, so ``row 7 of x.csv`` is the
seventh record after the header (its line, unless quoted fields above it hold newlines).
The header is read and checked by :mod:`~sensorstream.sources.csv_header`. A resumed read
cuts the records before its offset again, with the same rule and grid, only to count them.
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

from sensorstream.errors import ConfigError
from sensorstream.readings import (
    Decoded,
    Limits,
    ReadingFormat,
    Truncated,
    dead_letters,
    decode_frame,
)
from sensorstream.readings.format import PATH_SEPARATOR
from sensorstream.sources.csv_header import read_header
from sensorstream.sources.csv_split import (
    COMMA,
    CsvRecordSplitter,
    field_counts,
    parity_before,
    quote_parity,
)
from sensorstream.sources.file_formats import RawChunk, oversized_dead_letter, too_large_message
from sensorstream.sources.grid import cut_stream
from sensorstream.sources.streams import PlainStream, open_input

Indexes = npt.NDArray[np.intp]

# What counts as white space in a blank record (a CRLF file's blank line is "\r").
_SPACE = b" \t\r"
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
        return head, self.starting_at(self.start + cut)

    def starting_at(self, offset: int) -> CsvChunk:
        """The records from ``offset`` on (a record start in the chunk, or its end)."""
        cut = offset - self.start
        skipped = int(np.searchsorted(self.ends, cut))  # the records ending before ``cut``
        return CsvChunk(
            self.data[cut:],
            offset,
            self.end,
            self.first + skipped,
            self.columns,
            self.ends[skipped:] - cut,
            self.oversized,
            self.done,
        )

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
        buf = np.frombuffer(self.data, dtype=np.uint8)
        parity = quote_parity(buf)
        odd = parity_before(parity, stops) != parity_before(parity, starts)
        left_open = ~blank & ~too_large & odd
        fields = field_counts(buf, parity, starts, stops)
        wrong = ~blank & ~too_large & ~left_open & (fields != len(self.columns))
        rejected: list[tuple[int, str, str]] = []
        for index in np.flatnonzero(too_large | left_open | wrong).tolist():
            row = self.first + index
            if too_large[index]:
                message = too_large_message(int(lengths[index]), limits)
                rejected.append((index, "payload_too_large", message))
            elif left_open[index]:
                quotes = self.data.count(b'"', int(starts[index]), int(stops[index]))
                message = _left_open_message(row, quotes, self.columns, limits)
                rejected.append((index, "invalid_csv", message))
            else:
                message = (
                    f"row {row} has {int(fields[index])} fields, the header has {len(self.columns)}"
                )
                rejected.append((index, "wrong_field_count", message))
        return blank, rejected, np.flatnonzero(~(blank | too_large | left_open | wrong))


def _left_open_message(row: int, quotes: int, columns: tuple[str, ...], limits: Limits) -> str:
    """Why a record with an odd number of quotes is a dead letter, and how to mend it."""
    plural = "s" if quotes > 1 else ""
    return (
        f"row {row}: a quote is left open ({quotes} double quote{plural}, an odd number, and no "
        f"line within {limits.max_payload_bytes:,} bytes (readings.limits.max_payload_bytes) "
        f"closes it into a well-formed row of {len(columns)} fields); a field with a double "
        'quote in it must be quoted as a whole, its quotes doubled ("12"" sensor")'
    )


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
    commas = np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == COMMA)
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


# Header names a message quotes when a column is missing: enough to spot a misspelling.
_SHOWN_COLUMNS = 12


def check_fields(path: Path, fmt: ReadingFormat) -> None:
    """Refuse a nested field (a dotted path) that no column of the CSV header is named for.

    CSV has no nesting: a dotted field is read from the column named exactly like it
    (``payload.location.region``, as flattening tools name them), so without one every
    row would lack it. Raises a ConfigError naming the field and the header's columns.
    """
    nested = [where for where in fmt.wire_fields(pl.String()) if PATH_SEPARATOR in where]
    if not nested:
        return
    with open_input(path) as stream:
        header, _ = read_header(stream, path, fmt.limits)
    columns = header.columns if header is not None else ()
    absent = [where for where in nested if where not in columns]
    if absent:
        more = ", ..." if len(columns) > _SHOWN_COLUMNS else ""
        shown = ", ".join(columns[:_SHOWN_COLUMNS]) + more
        msg = (
            f"{path}: the readings field {absent[0]!r} is a nested path, and a CSV file has no "
            f"nesting: name a column {absent[0]!r} in the header to hold it flattened, or "
            f"read the field from a top-level column (the header has: {shown or 'nothing'})"
        )
        raise ConfigError(msg)


def read_csv_records(
    path: Path, start: int, chunk_bytes: int, limits: Limits
) -> Generator[CsvChunk, None, None]:
    """Chunks of about ``chunk_bytes`` of whole records from byte offset ``start`` on.

    Offset 0 (or anything up to the end of the header) reads from the first record. A
    resumed read cuts the records before ``start`` as an uninterrupted read does, only to
    count them, so row numbers stay right and the cuts after ``start`` are the same; the
    file is read (and decompressed, if compressed) up to ``start`` for it.
    """
    with open_input(path) as stream:
        header, buffered = read_header(stream, path, limits)
        if header is None:
            return
        compressed = not isinstance(stream, PlainStream)
        row = 1
        for piece in cut_stream(
            stream,
            start=header.end,
            buffered=buffered,
            chunk_bytes=chunk_bytes,
            max_record_bytes=limits.max_payload_bytes,
            max_raw_bytes=limits.max_raw_bytes,
            records=CsvRecordSplitter(len(header.columns), limits.max_payload_bytes),
        ):
            chunk = CsvChunk(
                piece.data,
                piece.start,
                piece.end,
                row,
                header.columns,
                piece.ends,
                piece.oversized,
                piece.stored_consumed if compressed else None,
            )
            row += chunk.records + (piece.oversized is not None)
            if chunk.end <= start:  # before the resume offset: counted, not decoded
                continue
            yield chunk if chunk.start >= start else chunk.starting_at(start)
