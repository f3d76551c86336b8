"""What a reading is: decoding raw payloads into a columnar batch, validation, dead-letter reasons.

Every source funnels its payloads through :func:`decode_json_lines` (JSON text) or
:func:`decode_frame` (already tabular: CSV, Parquet), so there is one set of rules for what a
valid reading is. A batch of readings is a Polars frame with the canonical columns
``device_id`` (string), ``ts`` (UTC microsecond timestamp), one column per declared
measurement, one per tag and, if configured, ``message_id``. Anything that fails the rules
becomes a dead letter: the raw payload, the reason and the arrival time.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson
import polars as pl

from sensorstream.errors import ConfigError

MeasurementType = Literal["float", "int", "string", "bool", "geo"]
TimeUnit = Literal["auto", "s", "ms", "us", "ns"]

DEVICE = "device_id"
TS = "ts"
MESSAGE_ID = "message_id"
RESERVED = frozenset({DEVICE, TS, MESSAGE_ID})

TS_TYPE = pl.Datetime("us", "UTC")
GEO_TYPE = pl.Struct({"lat": pl.Float64, "lon": pl.Float64})
_POLARS_TYPES: dict[str, pl.DataType] = {
    "float": pl.Float64(),
    "int": pl.Int64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "geo": GEO_TYPE,
}
DEAD_LETTER_SCHEMA: dict[str, pl.DataType] = {
    "raw": pl.String(),
    "reason": pl.String(),
    "origin": pl.String(),
    "arrived_at": TS_TYPE,
}
# Lines per piece when a chunk fails to parse and is retried in smaller pieces.
_RETRY_PIECE_LINES = 2048
_EPOCH_UNIT_TO_US = {"s": 1_000_000.0, "ms": 1_000.0, "us": 1.0, "ns": 0.001}
_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z")


@dataclass(frozen=True)
class ReadingFormat:
    """How to find a reading's parts in a payload, and the limits a valid reading keeps.

    >>> fmt = ReadingFormat(measurements={"temperature": "float"})
    >>> fmt.canonical_schema()["temperature"]
    Float64
    """

    measurements: Mapping[str, MeasurementType]
    device_field: str = DEVICE
    time_field: str = TS
    time_unit: TimeUnit = "auto"
    tags: Sequence[str] = ()
    message_id_field: str | None = None
    max_future: timedelta = timedelta(hours=1)
    min_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)

    def __post_init__(self) -> None:
        if not self.measurements:
            msg = "a reading format needs at least one measurement (readings.measurements)"
            raise ConfigError(msg)
        for name, kind in self.measurements.items():
            if kind not in _POLARS_TYPES:
                msg = (
                    f"measurement {name!r} has type {kind!r}; "
                    f"allowed: {', '.join(sorted(_POLARS_TYPES))}"
                )
                raise ConfigError(msg)
        clashes = (set(self.measurements) | set(self.tags)) & RESERVED
        if clashes:
            msg = f"{sorted(clashes)} are reserved column names; rename the measurement or tag"
            raise ConfigError(msg)
        object.__setattr__(self, "measurements", dict(self.measurements))
        object.__setattr__(self, "tags", tuple(self.tags))

    def canonical_schema(self) -> dict[str, pl.DataType]:
        """The columns of a decoded batch of readings, in order."""
        schema: dict[str, pl.DataType] = {DEVICE: pl.String(), TS: TS_TYPE}
        schema.update({m: _POLARS_TYPES[k] for m, k in self.measurements.items()})
        schema.update({t: pl.String() for t in self.tags})
        if self.message_id_field:
            schema[MESSAGE_ID] = pl.String()
        return schema

    def _wire_schema(self, time_type: pl.DataType) -> dict[str, pl.DataType]:
        schema: dict[str, pl.DataType] = {
            self.device_field: pl.String(),
            self.time_field: time_type,
        }
        schema.update({m: _POLARS_TYPES[k] for m, k in self.measurements.items()})
        schema.update({t: pl.String() for t in self.tags})
        if self.message_id_field:
            schema[self.message_id_field] = pl.String()
        return schema


@dataclass
class Decoded:
    """The outcome of decoding one chunk: valid readings, dead letters and the payload count."""

    readings: pl.DataFrame
    dead_letters: pl.DataFrame
    payloads: int = field(default=0)


def empty_dead_letters() -> pl.DataFrame:
    """A dead-letter frame with no rows."""
    return pl.DataFrame(schema=DEAD_LETTER_SCHEMA)


def dead_letters(
    raws: Sequence[str], reasons: Sequence[str], origins: Sequence[str], arrived_at: datetime
) -> pl.DataFrame:
    """Build a dead-letter frame from parallel lists."""
    return pl.DataFrame(
        {
            "raw": list(raws),
            "reason": list(reasons),
            "origin": list(origins),
            "arrived_at": [arrived_at] * len(raws),
        },
        schema=DEAD_LETTER_SCHEMA,
    )


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
    """Parse with the declared schema (epoch integers, then numbers, then strings)."""
    first = _TIME_TYPE_HINT.get(id(fmt), 0)
    order = [first, *(i for i in range(len(_TIME_TYPES)) if i != first)]
    for index in order:
        try:
            frame = pl.read_ndjson(chunk, schema=fmt._wire_schema(_TIME_TYPES[index]))
        except pl.exceptions.PolarsError:
            continue
        _TIME_TYPE_HINT[id(fmt)] = index
        return frame
    return None


def _polars_problem(line: bytes, fmt: ReadingFormat) -> str | None:
    if _parse_lines_fast(line, fmt) is not None:
        return None
    try:
        pl.read_ndjson(io.BytesIO(line), schema=fmt._wire_schema(pl.String()))
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
    canonical = _to_canonical(wide, fmt)
    valid, reasons = validate(canonical, fmt, arrived_at)
    if reasons.height == 0:
        return Decoded(valid, empty_dead_letters(), wide.height)
    raws, origins = lookup.raws_and_origins(reasons["row"].to_list())
    dead = dead_letters(raws, reasons["reason"].to_list(), origins, arrived_at)
    return Decoded(valid, dead, wide.height)


def decode_frame(
    frame: pl.DataFrame,
    fmt: ReadingFormat,
    *,
    arrived_at: datetime,
    origin: str,
    first_row: int = 1,
) -> Decoded:
    """Decode readings that arrive already tabular (CSV, Parquet); rows keep their input names."""
    missing = [c for c in (fmt.device_field, fmt.time_field) if c not in frame.columns]
    if missing:
        msg = f"{origin} has no column {missing[0]!r}; columns are {frame.columns}"
        raise ConfigError(msg)
    wide_columns: list[pl.Expr] = []
    problems: list[pl.Expr] = []
    for name, dtype in fmt._wire_schema(pl.String()).items():
        if name not in frame.columns:
            wide_columns.append(pl.lit(None, dtype).alias(name))
            continue
        if name == fmt.time_field:
            source = frame.schema[name]
            target = pl.Float64() if source.is_numeric() else pl.String()
            wide_columns.append(pl.col(name).cast(target, strict=False))
            continue
        cast = pl.col(name).cast(dtype, strict=False)
        wide_columns.append(cast)
        problems.append(
            pl.when(pl.col(name).is_not_null() & cast.is_null()).then(
                _message(
                    f"measurement {name!r} must be {dtype}, got {{}}", pl.col(name).cast(pl.String)
                )
            )
        )
    checked = frame.with_row_index("__row").select(
        "__row",
        *wide_columns,
        pl.coalesce(problems).alias("__problem")
        if problems
        else pl.lit(None, pl.String).alias("__problem"),
    )
    bad = checked.filter(pl.col("__problem").is_not_null())
    good = checked.filter(pl.col("__problem").is_null())
    raws_frame = frame.with_row_index("__row").join(bad.select("__row"), on="__row").drop("__row")
    dead_parts = [
        dead_letters(
            [orjson.dumps(r, default=str).decode() for r in raws_frame.to_dicts()],
            bad["__problem"].to_list(),
            [f"row {first_row + i} of {origin}" for i in bad["__row"].to_list()],
            arrived_at,
        )
    ]
    canonical = _to_canonical(good.drop("__row", "__problem"), fmt)
    valid, reasons = validate(canonical, fmt, arrived_at)
    if reasons.height:
        rows = good["__row"].gather(reasons["row"]).to_list()
        raw_rows = frame.with_row_index("__row").filter(pl.col("__row").is_in(rows)).drop("__row")
        dead_parts.append(
            dead_letters(
                [orjson.dumps(r, default=str).decode() for r in raw_rows.to_dicts()],
                reasons["reason"].to_list(),
                [f"row {first_row + i} of {origin}" for i in rows],
                arrived_at,
            )
        )
    return Decoded(valid, pl.concat(dead_parts), frame.height)


def _to_canonical(wide: pl.DataFrame, fmt: ReadingFormat) -> pl.DataFrame:
    """Rename input fields to canonical names and turn the time field into a UTC timestamp."""
    time_col = pl.col(fmt.time_field)
    if wide.schema[fmt.time_field] == pl.String():
        as_number = time_col.cast(pl.Float64, strict=False)
        as_text = time_col.str.replace(r"[zZ]$", "+00:00")
        iso = pl.coalesce([as_text.str.strptime(TS_TYPE, f, strict=False) for f in _ISO_FORMATS])
        ts_expr = pl.coalesce(_epoch_to_ts(as_number, fmt.time_unit), iso)
    else:
        unit = fmt.time_unit
        if unit == "auto":
            unit = _epoch_unit(wide[fmt.time_field])
        ts_expr = _epoch_to_ts(time_col, unit)
    columns = [pl.col(fmt.device_field).alias(DEVICE), ts_expr.alias(TS)]
    columns += [pl.col(m) for m in fmt.measurements]
    columns += [pl.col(t) for t in fmt.tags]
    if fmt.message_id_field:
        columns.append(pl.col(fmt.message_id_field).alias(MESSAGE_ID))
    # The raw time value is kept only to explain a rejection.
    columns.append(time_col.alias("__raw_time"))
    return wide.select(columns)


def _epoch_to_ts(value: pl.Expr, unit: TimeUnit) -> pl.Expr:
    if unit == "auto":
        magnitude = value.abs()
        factor = (
            pl.when(magnitude < 1e11)
            .then(1_000_000.0)
            .when(magnitude < 1e14)
            .then(1_000.0)
            .when(magnitude < 1e17)
            .then(1.0)
            .otherwise(0.001)
        )
    else:
        factor = pl.lit(_EPOCH_UNIT_TO_US[unit])
    micros = (value * factor).round(0)
    in_range = micros.abs() < 9.2e18
    return pl.when(in_range & value.is_finite()).then(micros.cast(pl.Int64)).cast(TS_TYPE)


def _epoch_unit(values: pl.Series) -> TimeUnit:
    """The one epoch unit every value of a chunk is in, or ``auto`` if they differ."""
    low, high = values.abs().min(), values.abs().max()
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return "auto"
    units: tuple[tuple[float, TimeUnit], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))
    for limit, unit in units:
        if high < limit:
            return unit if low >= limit / 1000 else "auto"
    return "ns" if low >= 1e17 else "auto"


def _message(template: str, *values: pl.Expr) -> pl.Expr:
    """``template`` with each ``{}`` replaced by a value (pl.format panics on some frames)."""
    pieces = template.split("{}")
    parts: list[pl.Expr] = [pl.lit(pieces[0])]
    for value, piece in zip(values, pieces[1:], strict=True):
        parts += [value.cast(pl.String).fill_null("null"), pl.lit(piece)]
    return pl.concat_str(parts)


def validate(
    readings: pl.DataFrame, fmt: ReadingFormat, arrived_at: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split canonical readings into valid ones and (row, reason) for the rest.

    The frame may carry ``__raw_time`` (the time value as received) for the messages.
    """
    latest = arrived_at + fmt.max_future
    raw_time = pl.col("__raw_time") if "__raw_time" in readings.columns else pl.col(TS)
    checks: list[tuple[pl.Expr, pl.Expr]] = [
        (
            pl.col(DEVICE).is_null() | (pl.col(DEVICE).str.len_bytes() == 0),
            pl.lit(f"missing device id (field {fmt.device_field!r})"),
        ),
        (raw_time.is_null(), pl.lit(f"missing timestamp (field {fmt.time_field!r})")),
        (
            pl.col(TS).is_null(),
            _message(
                "timestamp {} is neither an epoch number nor ISO 8601 with a time zone",
                raw_time.cast(pl.String),
            ),
        ),
        (
            pl.col(TS) > pl.lit(latest, TS_TYPE),
            _message(
                f"timestamp {{}} is in the future: more than {fmt.max_future} after its arrival "
                "(readings.max_future)",
                pl.col(TS).dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
            ),
        ),
        (
            pl.col(TS) < pl.lit(fmt.min_time, TS_TYPE),
            _message(
                f"timestamp {{}} is before {fmt.min_time.date()} (readings.min_time); "
                "is the epoch unit right?",
                pl.col(TS).dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
            ),
        ),
    ]
    present: list[pl.Expr] = []
    for name, kind in fmt.measurements.items():
        column = pl.col(name)
        present.append(column.is_not_null())
        if kind == "float":
            checks.append(
                (
                    column.is_not_null() & ~column.is_finite(),
                    _message(f"measurement {name!r} is not a finite number ({{}})", column),
                )
            )
        elif kind == "geo":
            lat, lon = column.struct.field("lat"), column.struct.field("lon")
            checks.append(
                (
                    column.is_not_null()
                    & ~(lat.is_between(-90, 90) & lon.is_between(-180, 180)).fill_null(False),
                    _message(
                        f"measurement {name!r} has lat {{}}, lon {{}} outside -90..90, -180..180",
                        lat,
                        lon,
                    ),
                )
            )
    measurement_names = ", ".join(fmt.measurements)
    checks.append(
        (
            ~pl.any_horizontal(present),
            pl.lit(f"no measurements (expected one of {measurement_names})"),
        )
    )
    canonical = list(fmt.canonical_schema())
    # Cheap pass first: only rows that fail a check pay for building the message.
    bad = pl.any_horizontal([condition.fill_null(False) for condition, _ in checks])
    flagged = readings.with_row_index("row").with_columns(bad.alias("__bad"))
    bad_mask = flagged["__bad"]
    if not bad_mask.any():
        return readings.select(canonical), pl.DataFrame(
            schema={"row": pl.UInt32(), "reason": pl.String()}
        )
    # Each failing row gets the message of the first check it fails, built only for the
    # rows that fail it (nested when/then over messages proved fragile in Polars).
    rejected = flagged.filter(bad_mask)
    parts = [
        rejected.filter(condition.fill_null(False)).select(
            "row", message.cast(pl.String).alias("reason"), pl.lit(order).alias("__order")
        )
        for order, (condition, message) in enumerate(checks)
    ]
    reasons = (
        pl.concat(parts)
        .sort("row", "__order")
        .unique("row", keep="first", maintain_order=True)
        .select("row", "reason")
    )
    return flagged.filter(~bad_mask).select(canonical), reasons
