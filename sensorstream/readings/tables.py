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
) -> Decoded:
    """Decode readings that arrive already tabular (CSV, Parquet); rows keep their input names."""
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
        problems.append(
            pl.when(pl.col(name).is_not_null() & cast.is_null()).then(
                reason_message(
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
    canonical = to_canonical(good.drop("__row", "__problem"), fmt)
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
