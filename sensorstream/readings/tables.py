"""Decoding readings that arrive already tabular (CSV, Parquet) under the same rules as JSON."""

from __future__ import annotations

from datetime import datetime

import orjson
import polars as pl

from sensorstream.errors import ConfigError
from sensorstream.readings.format import (
    PATH_SEPARATOR,
    Decoded,
    ReadingFormat,
    dead_letters,
    path_keys,
)
from sensorstream.readings.validation import reason_message, to_canonical, validate


def decode_frame(
    frame: pl.DataFrame,
    fmt: ReadingFormat,
    *,
    arrived_at: datetime,
    origin: str,
    first_row: int = 1,
    raws: pl.Series | None = None,
    row_numbers: pl.Series | None = None,
) -> Decoded:
    """Decode readings that arrive already tabular (CSV, Parquet); rows keep their input names.

    ``raws`` holds each row as it arrived (a CSV record's bytes), for dead letters; without
    it a rejected row is kept as JSON. Row numbers in messages count from ``first_row``,
    or are each row's own in ``row_numbers`` (rows left out before decoding leave gaps).
    """
    located = {where: _locate(frame, where, origin) for where in fmt.wire_fields(pl.String())}
    missing = [c for c in (fmt.device_field, fmt.time_field) if located[c] is None]
    if missing:
        msg = f"{origin} has no column {missing[0]!r}; columns are {frame.columns}"
        raise ConfigError(msg)
    wide_columns: list[pl.Expr] = []
    problems: list[pl.Expr] = []
    for name, dtype in fmt.wire_fields(pl.String()).items():
        found = located[name]
        if found is None:
            wide_columns.append(pl.lit(None, dtype).alias(name))
            continue
        column, source = found
        if name == fmt.time_field:
            if isinstance(source, pl.Datetime):
                wide_columns.append(iso_text(column, source).alias(name))
                continue
            target = pl.Float64() if source.is_numeric() else pl.String()
            wide_columns.append(column.cast(target, strict=False).alias(name))
            continue
        cast = column.cast(dtype, strict=False)
        wide_columns.append(cast.alias(name))
        problems.append(
            pl.when(column.is_not_null() & cast.is_null()).then(
                reason_message(
                    f"{_what(fmt, name)} must be {dtype}, got {{}}", column.cast(pl.String)
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
    rejected_rows = bad["__row"].to_list()
    dead_parts = [
        dead_letters(
            _raws(frame, raws, rejected_rows),
            ["wrong_type"] * bad.height,
            bad["__problem"].to_list(),
            [f"row {n} of {origin}" for n in _numbers(rejected_rows, first_row, row_numbers)],
            arrived_at,
            max_raw_bytes=fmt.limits.max_raw_bytes,
        )
    ]
    canonical = to_canonical(good.drop("__row", "__problem"), fmt)
    valid, reasons = validate(canonical, fmt, arrived_at)
    if reasons.height:
        rows = good["__row"].gather(reasons["row"]).to_list()
        dead_parts.append(
            dead_letters(
                _raws(frame, raws, rows),
                reasons["reason_code"].to_list(),
                reasons["reason"].to_list(),
                [f"row {n} of {origin}" for n in _numbers(rows, first_row, row_numbers)],
                arrived_at,
                max_raw_bytes=fmt.limits.max_raw_bytes,
            )
        )
    return Decoded(valid, pl.concat(dead_parts), frame.height)


def _locate(frame: pl.DataFrame, where: str, origin: str) -> tuple[pl.Expr, pl.DataType] | None:
    """A field of a table and its type: the column of its name, else struct fields by its path.

    None if the table lacks it (a column, or a struct field on the way). A column on the way
    that is no struct cannot hold the field: a ConfigError (a CSV file, say, has no nesting,
    and names the column ``payload.location.region`` if it holds the field flattened).
    """
    if where in frame.columns:
        return pl.col(where), frame.schema[where]
    first, *rest = path_keys(where)
    if not rest or first not in frame.columns:
        return None
    column, dtype = pl.col(first), frame.schema[first]
    for depth, key in enumerate(rest, start=1):
        if not isinstance(dtype, pl.Struct):
            on_the_way = PATH_SEPARATOR.join([first, *rest[: depth - 1]])
            msg = (
                f"{origin}: the readings field {where!r} lies inside {on_the_way!r}, which is "
                f"{dtype}, not a struct; a table without nesting (CSV) holds the field "
                f"flattened, in a column named {where!r}"
            )
            raise ConfigError(msg)
        inner = {entry.name: entry.dtype for entry in dtype.fields}
        if key not in inner:
            return None
        found = inner[key]
        column, dtype = column.struct.field(key), found() if isinstance(found, type) else found
    return column, dtype


def _what(fmt: ReadingFormat, where: str) -> str:
    """How a message names a field: ``measurement 'loc' (field 'payload.loc')``, ``field 'x'``."""
    measurement = next((m for m in fmt.measurements if fmt.field_of(m) == where), None)
    if measurement is None:
        return f"field {where!r}"
    if measurement == where:
        return f"measurement {where!r}"
    return f"measurement {measurement!r} (field {where!r})"


def iso_text(column: pl.Expr, dtype: pl.Datetime) -> pl.Expr:
    """A timestamp-typed time (Parquet) as ISO 8601 text, which decoding reads.

    A time with a zone becomes UTC text with its offset; a naive one stays zone-less text,
    so that decoding reads it in ``readings.time_zone`` as it reads zone-less JSON text.
    """
    if dtype.time_zone is None:
        return column.dt.to_string("%Y-%m-%dT%H:%M:%S%.f")
    utc = column.dt.convert_time_zone("UTC")
    return utc.dt.to_string("%Y-%m-%dT%H:%M:%S%.f+00:00")


def _numbers(rows: list[int], first_row: int, row_numbers: pl.Series | None) -> list[int]:
    """The input row numbers of the given rows of the frame."""
    if row_numbers is None:
        return [first_row + i for i in rows]
    return row_numbers.gather(rows).to_list() if rows else []


def _raws(frame: pl.DataFrame, raws: pl.Series | None, rows: list[int]) -> list[bytes]:
    """The given rows as they arrived, or as JSON objects when nothing else is known."""
    if not rows:
        return []
    if raws is not None:
        return [bytes(raw) for raw in raws.gather(rows).to_list()]
    return [orjson.dumps(row, default=str) for row in frame[rows].to_dicts()]
