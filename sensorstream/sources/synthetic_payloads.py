"""Generated readings as payloads: JSON lines or table rows, broken where marked malformed.

:func:`payloads` names and types the fields the way a reading format reads them;
:func:`json_lines` and :func:`break_rows` then spoil the rows the generator marked
malformed, one kind each (see :data:`~sensorstream.sources.synthetic.MALFORMED_KINDS`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import BinaryIO, Literal

import polars as pl

from sensorstream.readings import ReadingFormat
from sensorstream.sources.synthetic import (
    COPIES,
    DEVICE,
    DEVICE_ID,
    EVENT_TIME,
    MALFORMED,
    SCHEDULED,
)

EpochUnit = Literal["s", "ms", "us", "ns"]
FAR_FUTURE = timedelta(days=3650)
_US_PER_UNIT: dict[EpochUnit, float] = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}


@dataclass(frozen=True)
class Layout:
    """Where each part of a reading goes in a payload; mirrors a ReadingFormat."""

    device_field: str = "device_id"
    time_field: str = "ts"
    time_unit: EpochUnit = "ms"
    integers: frozenset[str] = field(default_factory=frozenset)  # measurements sent as integers
    tags: tuple[str, ...] = ()
    message_id_field: str | None = None

    @classmethod
    def of(cls, fmt: ReadingFormat) -> Layout:
        """The payload layout that a reading format reads."""
        unit: EpochUnit = "ms" if fmt.time_unit == "auto" else fmt.time_unit
        integers = frozenset(m for m, kind in fmt.measurements.items() if kind == "int")
        return cls(
            fmt.device_field, fmt.time_field, unit, integers, tuple(fmt.tags), fmt.message_id_field
        )


def payloads(readings: pl.DataFrame, layout: Layout, measurements: Sequence[str]) -> pl.DataFrame:
    """Readings as payload fields (named and typed as ``layout`` says), duplicates repeated.

    The ``MALFORMED`` column stays, for :func:`json_lines` or :func:`break_rows` to use.
    """
    event_us = pl.col(EVENT_TIME)
    if layout.time_unit == "s":
        time = (event_us.cast(pl.Float64) / 1e6).round(3)
    else:
        unit_us = _US_PER_UNIT[layout.time_unit]
        time = event_us // int(unit_us) if unit_us >= 1 else event_us * round(1 / unit_us)
    fields = [pl.col(DEVICE_ID).alias(layout.device_field), time.alias(layout.time_field)]
    for name in measurements:
        value = pl.col(name)
        fields.append(value.round(0).cast(pl.Int64) if name in layout.integers else value)
    # A few groups per tag, so a pipeline keyed by a tag has something to group.
    fields += [pl.format("{}-{}", pl.lit(t), pl.col(DEVICE) % 4).alias(t) for t in layout.tags]
    if layout.message_id_field:
        message_id = pl.format("{}-{}", pl.col(DEVICE_ID), pl.col(SCHEDULED))
        fields.append(message_id.alias(layout.message_id_field))
    if (readings[COPIES] > 1).any():
        repeated = pl.int_range(pl.len()).repeat_by(pl.col(COPIES)).explode()
        readings = readings.select(pl.all().gather(repeated))
    return readings.select(*fields, MALFORMED)


def json_lines(frame: pl.DataFrame, layout: Layout) -> bytes:
    """NDJSON for payload rows (see :func:`payloads`), malformed rows broken as marked."""
    buffer = io.BytesIO()
    write_json_lines(frame, layout, buffer)
    return buffer.getvalue()


def write_json_lines(frame: pl.DataFrame, layout: Layout, target: BinaryIO) -> None:
    """Write :func:`json_lines` to a binary file, without holding it all as one string."""
    fields = [c for c in frame.columns if c != MALFORMED]
    bad = frame[MALFORMED].is_not_null()
    if not bad.any():
        frame.select(fields).write_ndjson(target)
        return
    lines = frame.select(_json(fields).alias("line"))["line"]
    broken = frame.with_row_index("_row").filter(bad)
    variants = _broken_json(fields, layout)
    broken_lines = broken.select(
        _by_kind(pl.col(MALFORMED), variants, pl.lit(None, pl.String)).alias("line")
    )["line"]
    lines = lines.scatter(broken["_row"], broken_lines)
    # One text column written without quoting is exactly one line per payload.
    pl.DataFrame({"line": lines}).write_csv(target, include_header=False, quote_style="never")


def _broken_json(fields: list[str], layout: Layout) -> list[pl.Expr]:
    """One way to break a payload per malformed kind, in :data:`MALFORMED_KINDS` order."""
    full = _json(fields)
    first = next(f for f in fields if f not in (layout.device_field, layout.time_field))

    def replaced(name: str, value: pl.Expr) -> pl.Expr:
        return _json([value.alias(f) if f == name else pl.col(f) for f in fields])

    return [
        full.str.slice(0, full.str.len_chars() // 2),
        _json([f for f in fields if f != layout.time_field]),
        replaced(first, pl.lit("n/a")),
        replaced(first, pl.lit("NaN!")).str.replace('"NaN!"', "NaN", literal=True),
        replaced(layout.time_field, pl.col(layout.time_field) + _far_future(layout.time_unit)),
    ]


def break_rows(frame: pl.DataFrame, layout: Layout) -> pl.DataFrame:
    """Tabular payload rows (CSV, Parquet) broken as marked, in ways a typed table can be.

    A table cannot hold broken JSON or text in a number column, so those kinds become a
    missing device id and a row without measurements.
    """
    fields = [c for c in frame.columns if c != MALFORMED]
    kind = pl.col(MALFORMED)
    measurements = [f for f in fields if f not in (layout.device_field, layout.time_field)]
    time = pl.col(layout.time_field)
    changes = {
        layout.device_field: _by_kind(kind, [pl.lit(None, pl.String)], pl.col(layout.device_field)),
        layout.time_field: _by_kind(
            kind, [time, pl.lit(None), time, time, time + _far_future(layout.time_unit)], time
        ),
    }
    for number, name in enumerate(measurements):
        column = pl.col(name)
        nan = pl.lit(float("nan")) if number == 0 else column
        changes[name] = _by_kind(kind, [column, column, pl.lit(None), nan], column)
    return frame.select(changes[f].alias(f) for f in fields)


def _by_kind(kind: pl.Expr, variants: list[pl.Expr], otherwise: pl.Expr) -> pl.Expr:
    expression = otherwise
    for number in reversed(range(len(variants))):
        expression = pl.when(kind == number).then(variants[number]).otherwise(expression)
    return expression


def _json(fields: Sequence[str | pl.Expr]) -> pl.Expr:
    return pl.struct(*fields).struct.json_encode()


def _far_future(unit: EpochUnit) -> int | float:
    amount = _us(FAR_FUTURE) / _US_PER_UNIT[unit]
    return amount if unit == "s" else round(amount)


def _us(value: timedelta) -> float:
    return value / timedelta(microseconds=1)
