"""Decoding newline-delimited JSON payloads, with poison lines isolated and explained.

The fast path parses a whole chunk at once (the compiled scanner, else Polars); a chunk with
a bad line is first screened for lines past the format's limits, then retried in pieces, and
only a failing piece is checked line by line, so each bad line becomes a dead letter with
its line number, a reason code and a message, and never stalls the rest.
"""

from __future__ import annotations

import io
from datetime import datetime

import polars as pl

from sensorstream.readings.format import (
    Decoded,
    ReadingFormat,
    dead_letters,
    empty_dead_letters,
)
from sensorstream.readings.json_checks import (
    has_duplicate_key,
    is_blank,
    line_problem,
    screen_lines,
)
from sensorstream.readings.scanner import scan_lines
from sensorstream.readings.validation import to_canonical, validate

# Lines per piece when a chunk fails to parse and is retried in smaller pieces.
_RETRY_PIECE_LINES = 2048


def decode_json_lines(
    chunk: bytes,
    fmt: ReadingFormat,
    *,
    arrived_at: datetime,
    origin: str = "input",
    first_line: int = 1,
) -> Decoded:
    """Decode newline-delimited JSON readings; blank lines are counted, not payloads.

    The fast path parses the whole chunk at once; a chunk with a bad line is retried in
    pieces, and only the failing pieces are checked line by line, so one poison line costs
    a few thousand lines of re-parsing, never a stall.
    """
    scanned = scan_lines(chunk, fmt)
    if scanned is not None:
        lookup = _LineLookup(chunk, origin, first_line)
        return _finish(scanned.frame, fmt, arrived_at, lookup, blank=scanned.blank)
    screened = screen_lines(chunk, fmt, origin=origin, first_line=first_line, arrived_at=arrived_at)
    # The scanner declined this chunk; only a chunk that lost lines past a limit is worth
    # scanning again.
    rescan = screened.chunk is not chunk
    chunk = screened.chunk
    wide = _parse_lines_fast(chunk, fmt, scan=rescan)
    if wide is not None:
        decoded = _finish(wide, fmt, arrived_at, _LineLookup(chunk, origin, first_line))
        return _with(decoded, screened.dead_letters, screened.blank)
    lines = chunk.split(b"\n")
    frames: list[pl.DataFrame] = []
    dead: list[pl.DataFrame] = [screened.dead_letters]
    payloads = screened.dead_letters.height
    for start in range(0, len(lines), _RETRY_PIECE_LINES):
        piece_lines = lines[start : start + _RETRY_PIECE_LINES]
        piece = b"\n".join(piece_lines)
        decoded = _decode_piece(piece, piece_lines, fmt, arrived_at, origin, first_line + start)
        frames.append(decoded.readings)
        dead.append(decoded.dead_letters)
        payloads += decoded.payloads
    return Decoded(pl.concat(frames), pl.concat(dead), payloads, screened.blank)


def _with(decoded: Decoded, dead: pl.DataFrame, blank: int) -> Decoded:
    """``decoded`` with earlier dead letters in front, and the chunk's blank lines."""
    if dead.height == 0:
        return Decoded(decoded.readings, decoded.dead_letters, decoded.payloads, blank)
    return Decoded(
        decoded.readings,
        pl.concat([dead, decoded.dead_letters]),
        decoded.payloads + dead.height,
        blank,
    )


def _decode_piece(
    piece: bytes,
    piece_lines: list[bytes],
    fmt: ReadingFormat,
    arrived_at: datetime,
    origin: str,
    first_line: int,
) -> Decoded:
    wide = _parse_lines_fast(piece, fmt)
    if wide is not None:
        return _finish(wide, fmt, arrived_at, _LineLookup(piece, origin, first_line))
    good: list[bytes] = []
    good_numbers: list[int] = []
    bad: list[tuple[bytes, str, str, int]] = []  # raw, code, message, line number
    for offset, line in enumerate(piece_lines):
        if is_blank(line):
            continue
        number = first_line + offset
        problem = line_problem(line, fmt, number)
        if problem is None:
            good.append(line)
            good_numbers.append(number)
        else:
            bad.append((line, *problem, number))
    if good:
        wide = _parse_lines_fast(b"\n".join(good), fmt)
        if wide is None:
            # Something the JSON check let through still breaks the parser (a number too
            # large for its column, say): only now pay for finding it line by line.
            still_good = []
            for line, number in zip(good, good_numbers, strict=True):
                unparsed = _polars_problem(line, fmt)
                if unparsed is None:
                    still_good.append((line, number))
                else:
                    bad.append((line, "wrong_type", unparsed, number))
            good = [line for line, _ in still_good]
            good_numbers = [number for _, number in still_good]
            wide = _parse_lines_fast(b"\n".join(good), fmt) if good else None
            if good and wide is None:  # pragma: no cover - each of these lines parsed alone
                msg = "lines that parse one by one failed to parse together"
                raise AssertionError(msg)
    bad.sort(key=lambda item: item[3])
    dead = dead_letters(
        [raw for raw, _, _, _ in bad],
        [code for _, code, _, _ in bad],
        [message for _, _, message, _ in bad],
        [f"line {number} of {origin}" for _, _, _, number in bad],
        arrived_at,
        max_raw_bytes=fmt.limits.max_raw_bytes,
    )
    if wide is None:
        return Decoded(pl.DataFrame(schema=fmt.canonical_schema()), dead, len(bad))
    lookup = _LineLookup(b"\n".join(good), origin, first_line, numbers=good_numbers)
    decoded = _finish(wide, fmt, arrived_at, lookup)
    return Decoded(
        decoded.readings, pl.concat([dead, decoded.dead_letters]), decoded.payloads + len(bad)
    )


_TIME_TYPES: tuple[pl.DataType, ...] = (pl.Int64(), pl.Float64(), pl.String())
# Which time type parsed last time, per reading format: most inputs keep one, so the first
# try usually succeeds (epoch integers parse fastest, strings slowest).
_TIME_TYPE_HINT: dict[int, int] = {}


def _parse_lines_fast(
    chunk: bytes, fmt: ReadingFormat, *, scan: bool = True
) -> pl.DataFrame | None:
    """Parse with the declared schema; None if some line does not fit it.

    The compiled scanner takes plain flat objects; anything else goes to Polars' reader
    (epoch integers, then numbers, then strings), which keeps the first of two values of
    one key: a chunk where a line repeats a field the pipeline reads does not fit either.
    """
    scanned = scan_lines(chunk, fmt) if scan else None
    if scanned is not None:
        return scanned.frame
    first = _TIME_TYPE_HINT.get(id(fmt), 0)
    order = [first, *(i for i in range(len(_TIME_TYPES)) if i != first)]
    for index in order:
        try:
            frame = pl.read_ndjson(chunk, schema=fmt.wire_schema(_TIME_TYPES[index]))
        except pl.exceptions.PolarsError:
            continue
        _TIME_TYPE_HINT[id(fmt)] = index
        return None if has_duplicate_key(chunk, frame, fmt) else frame
    return None


def _polars_problem(line: bytes, fmt: ReadingFormat) -> str | None:
    if _parse_lines_fast(line, fmt) is not None:
        return None
    try:
        pl.read_ndjson(io.BytesIO(line), schema=fmt.wire_schema(pl.String()))
    except pl.exceptions.PolarsError as error:
        return f"cannot decode: {str(error).splitlines()[0]}"
    return None  # pragma: no cover - the first parse failed, so this one does too


class _LineLookup:
    """Finds the raw line behind a parsed row, only when a row turns out invalid."""

    def __init__(
        self, chunk: bytes, origin: str, first_line: int, numbers: list[int] | None = None
    ) -> None:
        self.chunk, self.origin, self.first_line, self.numbers = chunk, origin, first_line, numbers

    def raws_and_origins(self, rows: list[int]) -> tuple[list[bytes], list[str]]:
        lines = self.chunk.split(b"\n")
        kept = [i for i, line in enumerate(lines) if not is_blank(line)]
        raws = [lines[kept[r]] for r in rows]
        if self.numbers is not None:
            numbers = [self.numbers[r] for r in rows]
        else:
            numbers = [self.first_line + kept[r] for r in rows]
        return raws, [f"line {n} of {self.origin}" for n in numbers]


def _finish(
    wide: pl.DataFrame,
    fmt: ReadingFormat,
    arrived_at: datetime,
    lookup: _LineLookup,
    *,
    blank: int = 0,
) -> Decoded:
    canonical = to_canonical(wide, fmt)
    valid, reasons = validate(canonical, fmt, arrived_at)
    if reasons.height == 0:
        return Decoded(valid, empty_dead_letters(), wide.height, blank)
    raws, origins = lookup.raws_and_origins(reasons["row"].to_list())
    dead = dead_letters(
        raws,
        reasons["reason_code"].to_list(),
        reasons["reason"].to_list(),
        origins,
        arrived_at,
        max_raw_bytes=fmt.limits.max_raw_bytes,
    )
    return Decoded(valid, dead, wide.height, blank)
