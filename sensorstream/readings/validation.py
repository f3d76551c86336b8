"""Turning decoded fields into canonical readings, and the rules a valid reading keeps.

Every decoder ends here, so there is one set of rules (and one wording of each dead-letter
reason) whatever the payload's format.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from sensorstream.readings.format import (
    DEVICE,
    GEO_TYPE,
    MESSAGE_ID,
    TS,
    TS_TYPE,
    ReadingFormat,
    TimeUnit,
    path_keys,
)

_EPOCH_UNIT_TO_US = {"s": 1_000_000.0, "ms": 1_000.0, "us": 1.0, "ns": 0.001}
_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z")
_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")
_LOCAL_TIME = "__local_time"  # a zone-less time text as read, kept to explain a gap
_EXACT_FLOAT = 2**53  # integers below this are exact as floats
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_DAY = datetime(1, 1, 1, tzinfo=UTC)
_LAST_DAY = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def to_canonical(wide: pl.DataFrame, fmt: ReadingFormat) -> pl.DataFrame:
    """Rename input fields to canonical names and turn the time field into a UTC timestamp.

    A field is the column of its name (every field of a flat format, and of a table that
    holds it flattened) or else is reached by struct fields along its path: an object
    missing on the way gives a null. A latlon measurement's text is parsed into a geo
    value; the text is kept beside it (``__raw_text <name>``) to explain a rejection. A
    time text without a zone is local time in the format's ``time_zone``; it is kept as
    read (``__local_time``) to tell a local time the zone skips from text that is no time.
    """
    time_col = field_expr(wide, fmt.time_field)
    if fmt.time_field in wide.columns:
        values = wide[fmt.time_field]
    else:
        values = wide.select(time_col).to_series()
    kept: list[pl.Expr] = []
    if values.dtype == pl.String():
        as_number = time_col.cast(pl.Float64, strict=False)
        ts_expr = pl.coalesce(
            _epoch_to_ts(as_number, fmt.time_unit), parse_iso_time(time_col, fmt.time_zone)
        )
        kept.append(parse_local_time(time_col).alias(_LOCAL_TIME))
    else:
        magnitude = values.abs()
        low, high = magnitude.min(), magnitude.max()
        unit = fmt.time_unit
        if unit == "auto":
            unit = _epoch_unit(low, high)
        ts_expr = _epoch_to_ts(time_col, unit)
        if values.dtype.is_integer() and unit in ("s", "ms", "us"):
            # Whole epoch numbers in s, ms or us become microseconds by an exact integer
            # product; the float path gives the same while the product stays below 2**53.
            factor = int(_EPOCH_UNIT_TO_US[unit])
            if not isinstance(high, int) or high * factor < _EXACT_FLOAT:
                ts_expr = (time_col.cast(pl.Int64) * factor).cast(TS_TYPE)
    columns = [field_expr(wide, fmt.device_field).alias(DEVICE), ts_expr.alias(TS)]
    raw_texts: list[pl.Expr] = []
    for name, kind in fmt.measurements.items():
        value = field_expr(wide, fmt.field_of(name))
        if kind == "latlon":
            columns.append(parse_latlon(value).alias(name))
            raw_texts.append(value.alias(raw_text_column(name)))
        else:
            columns.append(value.alias(name))
    columns += [field_expr(wide, fmt.field_of(t)).alias(t) for t in fmt.tags]
    if fmt.message_id_field:
        columns.append(field_expr(wide, fmt.message_id_field).alias(MESSAGE_ID))
    # The raw time value is kept only to explain a rejection.
    columns.append(time_col.alias("__raw_time"))
    return wide.select(columns + kept + raw_texts)


def field_expr(wide: pl.DataFrame, field: str) -> pl.Expr:
    """A field of a wide frame: the column of its name, else struct fields along its path."""
    if field in wide.columns:
        return pl.col(field)
    first, *rest = path_keys(field)
    value = pl.col(first)
    for key in rest:
        value = value.struct.field(key)
    return value


def raw_text_column(name: str) -> str:
    """The column beside a latlon measurement that keeps its text as received."""
    return f"__raw_text {name}"


# One number as JSON or a person writes it: 47.37, -8, .5, 1e-3 (no NaN, no infinity).
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_LATLON = rf"^\s*(?P<lat>{_NUMBER})\s*,\s*(?P<lon>{_NUMBER})\s*$"


def parse_latlon(text: pl.Expr) -> pl.Expr:
    """The text ``"lat,lon"`` (spaces allowed around the comma) as a geo value; else null.

    >>> frame = pl.DataFrame({"at": ["47.37, 8.52", "north", None]})
    >>> frame.select(parse_latlon(pl.col("at")))["at"].to_list()
    [{'lat': 47.37, 'lon': 8.52}, None, None]
    """
    parts = text.str.extract_groups(_LATLON).cast(GEO_TYPE)
    return pl.when(parts.struct.field("lat").is_not_null()).then(parts)


def parse_iso_time(text: pl.Expr, time_zone: str | None = None) -> pl.Expr:
    """ISO 8601 text as a UTC timestamp; else null.

    Text with a zone (``Z`` or ``+02:00``) keeps its own. Text without one
    (``2024-06-01 14:00:00``, with a space or ``T``) is local time in ``time_zone``, or
    null without one (:func:`local_time_in` says how a daylight saving change is read).

    >>> values = pl.Series(["2024-06-01T14:00:00+02:00", "2024-06-01 12:00:00"])
    >>> pl.select(parse_iso_time(pl.lit(values))).to_series().to_list()
    [datetime.datetime(2024, 6, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC')), None]
    >>> pl.select(parse_iso_time(pl.lit(values), "Europe/Zurich")).to_series().to_list()[1]
    datetime.datetime(2024, 6, 1, 10, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC'))
    """
    as_text = text.str.replace(r"[zZ]$", "+00:00")
    zoned = [as_text.str.strptime(TS_TYPE, f, strict=False) for f in _ISO_FORMATS]
    if time_zone is None:
        return pl.coalesce(zoned)
    return pl.coalesce([*zoned, local_time_in(parse_local_time(text), time_zone)])


def parse_local_time(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text without a zone as a naive timestamp; else null (text with a zone too)."""
    naive = pl.Datetime(TS_TYPE.time_unit)
    return pl.coalesce([text.str.strptime(naive, f, strict=False) for f in _LOCAL_FORMATS])


def local_time_in(naive: pl.Expr, time_zone: str) -> pl.Expr:
    """Naive timestamps as local time in ``time_zone``, converted to UTC.

    A local time the zone skips (the hour lost when daylight saving time begins) is null: it
    names no instant, so the reading is a ``nonexistent_local_time`` dead letter. A local
    time the zone repeats (the hour when it ends) is the earlier of its two instants, the
    one still on summer time, as Python reads it (``fold=0``): the text cannot say which
    was meant, so one fixed choice keeps decoding deterministic. Readings taken in the
    second pass of that hour are then placed an hour early; a device that must avoid it
    sends its offset (``+01:00``), which is always kept.
    """
    local = naive.dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


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


def _epoch_unit(low: object, high: object) -> TimeUnit:
    """The one epoch unit of a chunk whose magnitudes span low..high, or ``auto`` if none."""
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return "auto"
    units: tuple[tuple[float, TimeUnit], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))
    for limit, unit in units:
        if high < limit:
            return unit if low >= limit / 1000 else "auto"
    return "ns" if low >= 1e17 else "auto"


# Characters of a value a message quotes: enough to recognise it, never a whole payload.
_SHOWN = 80


def reason_message(template: str, *values: pl.Expr) -> pl.Expr:
    """``template`` with each ``{}`` replaced by a value, cut to 80 characters.

    (``pl.format`` panics on some frames.)
    """
    pieces = template.split("{}")
    parts: list[pl.Expr] = [pl.lit(pieces[0])]
    for value, piece in zip(values, pieces[1:], strict=True):
        text = value.cast(pl.String).fill_null("null")
        cut = pl.when(text.str.len_chars() > _SHOWN).then(
            pl.concat_str(text.str.slice(0, _SHOWN - 1), pl.lit("…"))
        )
        parts += [cut.otherwise(text), pl.lit(piece)]
    return pl.concat_str(parts)


def validate(
    readings: pl.DataFrame, fmt: ReadingFormat, arrived_at: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split canonical readings into valid ones and (row, reason_code, reason) for the rest.

    The frame may carry ``__raw_time`` (the time value as received) for the messages.
    """
    latest = arrived_at + fmt.max_future
    canonical = list(fmt.canonical_schema())
    if _surely_valid(readings, fmt, latest):
        return readings.select(canonical), _no_reasons()
    raw_time = pl.col("__raw_time") if "__raw_time" in readings.columns else pl.col(TS)
    # What a message shows of a time out of the calendar's range: the value as received.
    received = raw_time if "__raw_time" in readings.columns else pl.col(TS).to_physical()
    max_id = fmt.limits.max_id_bytes
    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        (
            "missing_device_id",
            pl.col(DEVICE).is_null() | (pl.col(DEVICE).str.len_bytes() == 0),
            pl.lit(f"missing device id (field {fmt.device_field!r})"),
        ),
        (
            "id_too_long",
            pl.col(DEVICE).str.len_bytes() > max_id,
            reason_message(
                f"device id (field {fmt.device_field!r}) has {{}} bytes, more than "
                f"{max_id} (readings.limits.max_id_bytes)",
                pl.col(DEVICE).str.len_bytes(),
            ),
        ),
        (
            "missing_timestamp",
            raw_time.is_null(),
            pl.lit(f"missing timestamp (field {fmt.time_field!r})"),
        ),
        *_local_time_checks(readings, fmt, raw_time),
        (
            "bad_timestamp",
            pl.col(TS).is_null(),
            reason_message(
                "timestamp {} is neither an epoch number nor ISO 8601 "
                "(2024-05-12T02:11:37, with or without a zone)",
                raw_time.cast(pl.String),
            ),
        ),
        (
            "time_in_future",
            pl.col(TS) > pl.lit(latest, TS_TYPE),
            reason_message(
                f"timestamp {{}} is in the future: more than {fmt.max_future} after its arrival "
                "(readings.max_future)",
                _time_text(received),
            ),
        ),
        (
            "time_too_early",
            pl.col(TS) < pl.lit(fmt.min_time, TS_TYPE),
            reason_message(
                f"timestamp {{}} is before {fmt.min_time.date()} (readings.min_time); "
                "is the epoch unit right?",
                _time_text(received),
            ),
        ),
    ]
    for id_column, what in _id_columns(fmt):
        checks.append(
            (
                "id_too_long",
                pl.col(id_column).str.len_bytes() > max_id,
                reason_message(
                    f"{what} has {{}} bytes, more than {max_id} (readings.limits.max_id_bytes)",
                    pl.col(id_column).str.len_bytes(),
                ),
            )
        )
    present: list[pl.Expr] = []
    for name, kind in fmt.measurements.items():
        column = pl.col(name)
        present.append(column.is_not_null())
        if kind == "float":
            checks.append(
                (
                    "not_finite",
                    column.is_not_null() & ~column.is_finite(),
                    reason_message(f"measurement {name!r} is not a finite number ({{}})", column),
                )
            )
        elif kind in ("geo", "latlon"):
            if kind == "latlon" and raw_text_column(name) in readings.columns:
                text = pl.col(raw_text_column(name))
                checks.append(
                    (
                        "invalid_geo",
                        text.is_not_null() & column.is_null(),
                        reason_message(
                            f"measurement {name!r}{_read_from(fmt, name)} must be the text "
                            '"lat,lon", two numbers separated by a comma (e.g. "47.37,8.52"), '
                            "got {}",
                            text,
                        ),
                    )
                )
            lat, lon = column.struct.field("lat"), column.struct.field("lon")
            checks.append(
                (
                    "out_of_range",
                    column.is_not_null()
                    & ~(lat.is_between(-90, 90) & lon.is_between(-180, 180)).fill_null(False),
                    reason_message(
                        f"measurement {name!r} has lat {{}}, lon {{}} outside -90..90, -180..180",
                        lat,
                        lon,
                    ),
                )
            )
    measurement_names = ", ".join(fmt.measurements)
    checks.append(
        (
            "no_measurements",
            ~pl.any_horizontal(present),
            pl.lit(f"no measurements (expected one of {measurement_names})"),
        )
    )
    # Cheap pass first: only rows that fail a check pay for building the message.
    bad = pl.any_horizontal([condition.fill_null(False) for _, condition, _ in checks])
    flagged = readings.with_row_index("row").with_columns(bad.alias("__bad"))
    bad_mask = flagged["__bad"]
    if not bad_mask.any():
        return readings.select(canonical), _no_reasons()
    # Each failing row gets the message of the first check it fails, built only for the
    # rows that fail it (nested when/then over messages proved fragile in Polars).
    rejected = flagged.filter(bad_mask)
    parts = [
        rejected.filter(condition.fill_null(False)).select(
            "row",
            pl.lit(code).alias("reason_code"),
            message.cast(pl.String).alias("reason"),
            pl.lit(order).alias("__order"),
        )
        for order, (code, condition, message) in enumerate(checks)
    ]
    reasons = (
        pl.concat(parts)
        .sort("row", "__order")
        .unique("row", keep="first", maintain_order=True)
        .select("row", "reason_code", "reason")
    )
    return flagged.filter(~bad_mask).select(canonical), reasons


def _local_time_checks(
    readings: pl.DataFrame, fmt: ReadingFormat, raw_time: pl.Expr
) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """The check that a zone-less time names an instant in ``time_zone`` (none without one)."""
    if _LOCAL_TIME not in readings.columns:
        return []
    return [
        (
            "nonexistent_local_time",
            pl.col(TS).is_null() & pl.col(_LOCAL_TIME).is_not_null(),
            reason_message(
                f"timestamp {{}} has no zone and does not exist in {fmt.time_zone} "
                "(readings.time_zone): the clocks skip it when daylight saving time begins; "
                "send times with their offset, or in UTC",
                raw_time.cast(pl.String),
            ),
        )
    ]


def _read_from(fmt: ReadingFormat, name: str) -> str:
    """`` (field 'a.b')`` for a column read from a field of another name; else nothing."""
    where = fmt.field_of(name)
    return "" if where == name else f" (field {where!r})"


def _no_reasons() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"row": pl.UInt32(), "reason_code": pl.String(), "reason": pl.String()}
    )


def _id_columns(fmt: ReadingFormat) -> list[tuple[str, str]]:
    """Canonical string columns besides the device id that may become results keys."""
    columns = [(tag, f"tag {tag!r}") for tag in fmt.tags]
    if fmt.message_id_field:
        columns.append((MESSAGE_ID, f"message id (field {fmt.message_id_field!r})"))
    return columns


def _time_text(raw_time: pl.Expr) -> pl.Expr:
    """A reading's time for a message: ISO 8601 in years 1 to 9999, else the value as received.

    Formatting a time beyond what the calendar library can hold panics inside Polars, so the
    times are clipped into range before formatting and the raw value is shown instead.
    """
    ts = pl.col(TS)
    within = ts.is_between(pl.lit(_FIRST_DAY, TS_TYPE), pl.lit(_LAST_DAY, TS_TYPE))
    clipped = ts.clip(pl.lit(_FIRST_DAY, TS_TYPE), pl.lit(_LAST_DAY, TS_TYPE))
    return (
        pl.when(within)
        .then(clipped.dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"))
        .otherwise(raw_time.cast(pl.String))
    )


def _surely_valid(readings: pl.DataFrame, fmt: ReadingFormat, latest: datetime) -> bool:
    """Whether no row can fail a check, judged from column statistics alone.

    Nearly every batch is wholly valid; null counts, one minimum and maximum of the time,
    and the shortest device id show that without evaluating each check on each row. False
    only means "look row by row".
    """
    if readings.height == 0:
        return True
    device, ts = readings[DEVICE], readings[TS]
    raw_time = readings["__raw_time"] if "__raw_time" in readings.columns else ts
    if device.null_count() or raw_time.null_count() or ts.null_count():
        return False
    lengths = device.str.len_bytes()
    shortest, longest = lengths.min(), lengths.max()
    if not isinstance(shortest, int) or shortest == 0:
        return False
    if not isinstance(longest, int) or longest > fmt.limits.max_id_bytes:
        return False
    for id_column, _ in _id_columns(fmt):
        longest = readings[id_column].str.len_bytes().max()
        if isinstance(longest, int) and longest > fmt.limits.max_id_bytes:
            return False
    # Compared as microseconds: a time beyond year 9999 has no Python datetime.
    micros = ts.to_physical()
    earliest, last = micros.min(), micros.max()
    if not isinstance(earliest, int) or not isinstance(last, int):
        return False
    if earliest < _epoch_us(fmt.min_time) or last > _epoch_us(latest):
        return False
    for name, kind in fmt.measurements.items():
        column = readings[name]
        if kind in ("geo", "latlon"):
            return False
        if kind == "float" and not column.is_finite().all():
            return False
    if not fmt.measurements:
        return False
    if any(readings[name].null_count() == 0 for name in fmt.measurements):
        return True  # a measurement every row has
    present = pl.any_horizontal([pl.col(name).is_not_null() for name in fmt.measurements])
    return bool(readings.select(present.all()).item())


def _epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is read as UTC, as Polars reads it."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)
