"""Decoding newline-delimited JSON payloads, with poison lines isolated and explained.

The fast path parses a whole chunk with Polars; a chunk with a bad line is retried in
pieces, and only a failing piece is checked line by line, so each bad line becomes a dead
letter with its line number and a reason, and never stalls the rest.
"""

from __future__ import annotations

import io
from datetime import datetime

import orjson
import polars as pl

from sensorstream.readings.format import (
    Decoded,
    ReadingFormat,
    dead_letters,
    empty_dead_letters,
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
    """Decode newline-delimited JSON readings; blank lines are not payloads and are skipped.

    The fast path parses the whole chunk at once; a chunk with a bad line is retried in
    pieces, and only the failing pieces are checked line by line, so one poison line costs
    a few thousand lines of re-parsing, never a stall.
    """
    wide = _parse_lines_fast(chunk, fmt)
    if wide is not None:
        return _finish(wide, fmt, arrived_at, _LineLookup(chunk, origin, first_line))
    lines = chunk.split(b"\n")
    frames: list[pl.DataFrame] = []
    dead: list[pl.DataFrame] = []
    payloads = 0
    for start in range(0, len(lines), _RETRY_PIECE_LINES):
        piece_lines = lines[start : start + _RETRY_PIECE_LINES]
        piece = b"\n".join(piece_lines)
        decoded = _decode_piece(piece, piece_lines, fmt, arrived_at, origin, first_line + start)
        frames.append(decoded.readings)
        dead.append(decoded.dead_letters)
        payloads += decoded.payloads
    return Decoded(pl.concat(frames), pl.concat(dead), payloads)


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
    raws: list[str] = []
    reasons: list[str] = []
    origins: list[str] = []
    for offset, line in enumerate(piece_lines):
        if not line.strip():
            continue
        number = first_line + offset
        reason = _line_problem(line, fmt)
        if reason is None:
            good.append(line)
            good_numbers.append(number)
        else:
            raws.append(line.decode("utf-8", "replace"))
            reasons.append(reason)
            origins.append(f"line {number} of {origin}")
    dead = dead_letters(raws, reasons, origins, arrived_at)
    if not good:
        return Decoded(pl.DataFrame(schema=fmt.canonical_schema()), dead, len(raws))
    wide = _parse_lines_fast(b"\n".join(good), fmt)
    if wide is None:
        # Something the JSON check let through still breaks the parser (a number too large
        # for its column, say): only now pay for finding it line by line.
        still_good = [i for i, line in enumerate(good) if _polars_problem(line, fmt) is None]
        for i in sorted(set(range(len(good))) - set(still_good)):
            raws.append(good[i].decode("utf-8", "replace"))
            reasons.append(_polars_problem(good[i], fmt) or "cannot decode")
            origins.append(f"line {good_numbers[i]} of {origin}")
        good = [good[i] for i in still_good]
        good_numbers = [good_numbers[i] for i in still_good]
        dead = dead_letters(raws, reasons, origins, arrived_at)
        if not good:
            return Decoded(pl.DataFrame(schema=fmt.canonical_schema()), dead, len(raws))
        wide = _parse_lines_fast(b"\n".join(good), fmt)
        if wide is None:  # pragma: no cover - each of these lines parsed on its own
            msg = "lines that parse one by one failed to parse together"
            raise AssertionError(msg)
    lookup = _LineLookup(b"\n".join(good), origin, first_line, numbers=good_numbers)
    decoded = _finish(wide, fmt, arrived_at, lookup)
    return Decoded(
        decoded.readings, pl.concat([dead, decoded.dead_letters]), decoded.payloads + len(raws)
    )


_TIME_TYPES: tuple[pl.DataType, ...] = (pl.Int64(), pl.Float64(), pl.String())
# Which time type parsed last time, per reading format: most inputs keep one, so the first
# try usually succeeds (epoch integers parse fastest, strings slowest).
_TIME_TYPE_HINT: dict[int, int] = {}


def _parse_lines_fast(chunk: bytes, fmt: ReadingFormat) -> pl.DataFrame | None:
    """Parse with the declared schema; None if some line does not fit it.

    The compiled scanner takes plain flat objects; anything else goes to Polars' reader
    (epoch integers, then numbers, then strings).
    """
    scanned = scan_lines(chunk, fmt)
    if scanned is not None:
        return scanned
    first = _TIME_TYPE_HINT.get(id(fmt), 0)
    order = [first, *(i for i in range(len(_TIME_TYPES)) if i != first)]
    for index in order:
        try:
            frame = pl.read_ndjson(chunk, schema=fmt.wire_schema(_TIME_TYPES[index]))
        except pl.exceptions.PolarsError:
            continue
        _TIME_TYPE_HINT[id(fmt)] = index
        return frame
    return None


def _polars_problem(line: bytes, fmt: ReadingFormat) -> str | None:
    if _parse_lines_fast(line, fmt) is not None:
        return None
    try:
        pl.read_ndjson(io.BytesIO(line), schema=fmt.wire_schema(pl.String()))
    except pl.exceptions.PolarsError as error:
        return f"cannot decode: {str(error).splitlines()[0]}"
    return None  # pragma: no cover - the first parse failed, so this one does too


_KIND_CHECKS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "float": ((int, float), "a number"),
    "int": (int, "an integer"),
    "string": (str, "a string"),
    "bool": (bool, "true or false"),
}


def _json_type(value: object) -> str:
    names = {str: "string", bool: "boolean", int: "number", float: "number", list: "array"}
    return "object" if isinstance(value, dict) else names.get(type(value), "null")


def _line_problem(line: bytes, fmt: ReadingFormat) -> str | None:
    """Why one JSON line cannot be a reading, or None if its shape is fine."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return f"invalid JSON: {error}"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {_json_type(value)}"
    device = value.get(fmt.device_field)
    if device is not None and (isinstance(device, bool) or not isinstance(device, (str, int))):
        return f"device id field {fmt.device_field!r} must be a string, got {_json_type(device)}"
    ts = value.get(fmt.time_field)
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (str, int, float))):
        return (
            f"timestamp field {fmt.time_field!r} must be an epoch number or an ISO 8601 "
            f"string, got {_json_type(ts)}"
        )
    for name, kind in fmt.measurements.items():
        item = value.get(name)
        if item is None:
            continue
        if kind == "geo":
            if not (
                isinstance(item, dict)
                and all(_is_number(item.get(part)) for part in ("lat", "lon"))
            ):
                return f"measurement {name!r} must be an object with numeric lat and lon"
            continue
        types, wanted = _KIND_CHECKS[kind]
        wrong_bool = isinstance(item, bool) and kind != "bool"
        if wrong_bool or not isinstance(item, types):
            return f"measurement {name!r} must be {wanted}, got {_json_type(item)} {item!r}"
    for tag in fmt.tags:
        item = value.get(tag)
        if item is not None and not isinstance(item, (str, int, float)):
            return f"tag {tag!r} must be a string, got {_json_type(item)}"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _LineLookup:
    """Finds the raw line behind a parsed row, only when a row turns out invalid."""

    def __init__(
        self, chunk: bytes, origin: str, first_line: int, numbers: list[int] | None = None
    ) -> None:
        self.chunk, self.origin, self.first_line, self.numbers = chunk, origin, first_line, numbers

    def raws_and_origins(self, rows: list[int]) -> tuple[list[str], list[str]]:
        lines = self.chunk.split(b"\n")
        kept = [i for i, line in enumerate(lines) if line.strip()]
        raws = [lines[kept[r]].decode("utf-8", "replace") for r in rows]
        if self.numbers is not None:
            numbers = [self.numbers[r] for r in rows]
        else:
            numbers = [self.first_line + kept[r] for r in rows]
        return raws, [f"line {n} of {self.origin}" for n in numbers]


def _finish(
    wide: pl.DataFrame, fmt: ReadingFormat, arrived_at: datetime, lookup: _LineLookup
) -> Decoded:
    canonical = to_canonical(wide, fmt)
    valid, reasons = validate(canonical, fmt, arrived_at)
    if reasons.height == 0:
        return Decoded(valid, empty_dead_letters(), wide.height)
    raws, origins = lookup.raws_and_origins(reasons["row"].to_list())
    dead = dead_letters(raws, reasons["reason"].to_list(), origins, arrived_at)
    return Decoded(valid, dead, wide.height)
