"""Decoding readings that arrive already tabular (CSV, Parquet) under the same rules as JSON."""

from __future__ import annotations

from datetime import datetime

import orjson
import polars as pl

from sensorstream.errors import ConfigError
from sensorstream.readings.format import Decoded, ReadingFormat, dead_letters
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
    missing = [c for c in (fmt.device_field, fmt.time_field) if c not in frame.columns]
    if missing:
        msg = f"{origin} has no column {missing[0]!r}; columns are {frame.columns}"
        raise ConfigError(msg)
    wide_columns: list[pl.Expr] = []
    problems: list[pl.Expr] = []
    for name, dtype in fmt.wire_schema(pl.String()).items():
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
        what = "measurement" if name in fmt.measurements else "field"
        problems.append(
            pl.when(pl.col(name).is_not_null() & cast.is_null()).then(
                reason_message(
                    f"{what} {name!r} must be {dtype}, got {{}}", pl.col(name).cast(pl.String)
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
