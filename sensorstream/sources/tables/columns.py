"""Column types a reference table may declare, cast strictly, and a digest of a table's content.

A declared ``schema: {door_id: string, floor: int}`` says what each column must hold. Every
value must fit: a value that does not is an error naming the column, the value and its row,
never a silent null. Columns the schema leaves out keep the types Polars inferred.

>>> frame = pl.DataFrame({"floor": ["1", "2"], "open": ["true", "False"]})
>>> apply_schema(frame, {"floor": "int", "open": "bool"}, "doors.csv").rows()
[(1, True), (2, False)]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

import polars as pl

from sensorstream.errors import SourceError
from sensorstream.readings.validation import parse_iso_time

ColumnType = Literal["string", "float", "int", "bool", "datetime"]

POLARS_TYPES: dict[ColumnType, pl.DataType] = {
    "string": pl.String(),
    "float": pl.Float64(),
    "int": pl.Int64(),
    "bool": pl.Boolean(),
    "datetime": pl.Datetime("us", "UTC"),
}

_ARTICLES = {"int": "an int", "float": "a float", "bool": "a bool", "string": "a string"}
_HINTS = {
    "bool": ": write true or false",
    "datetime": ": write ISO 8601 with a time zone, e.g. 2024-06-01T12:00:00Z",
}


def apply_schema(
    frame: pl.DataFrame, schema: Mapping[str, ColumnType], origin: str
) -> pl.DataFrame:
    """``frame`` with each declared column cast to its type; raises SourceError if one won't fit.

    ``origin`` names where the frame came from (``doors.csv``), for messages.
    """
    missing = [column for column in schema if column not in frame.columns]
    if missing:
        msg = (
            f"{origin} has no column {missing[0]!r}, which the schema declares; "
            f"its columns are {', '.join(frame.columns)}"
        )
        raise SourceError(msg)
    cast = {column: _cast(frame[column], kind, origin) for column, kind in schema.items()}
    return frame.with_columns(**cast)


def _cast(values: pl.Series, kind: ColumnType, origin: str) -> pl.Series:
    target = POLARS_TYPES[kind]
    source = values.dtype
    if source == target:
        return values
    converted: pl.Series | None = None
    if kind == "string":
        converted = values.cast(pl.String)
    elif kind == "bool" and source == pl.String:
        lowered = values.str.strip_chars().str.to_lowercase()
        converted = pl.select(
            pl.when(lowered == "true").then(True).when(lowered == "false").then(False)
        ).to_series()
    elif kind == "datetime" and source == pl.String:
        converted = pl.select(parse_iso_time(pl.lit(values))).to_series()
    elif kind == "datetime" and isinstance(source, pl.Datetime):
        converted = (
            values.dt.convert_time_zone("UTC")
            if source.time_zone
            else values.dt.replace_time_zone("UTC")
        ).dt.cast_time_unit("us")
    elif kind in ("int", "float") and (source == pl.String or source.is_numeric()):
        converted = values.cast(target, strict=False)
        if kind == "int" and source.is_float():
            # A float cast to an int is truncated, not refused: 2.5 must not become 2.
            exact = values.is_null() | (values == values.floor())
            converted = pl.select(pl.when(exact).then(converted)).to_series()
    if converted is None:
        msg = f"column {values.name!r} of {origin} holds {source} values, not {_noun(kind)}"
        raise SourceError(msg)
    bad = values.is_not_null() & converted.is_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        msg = (
            f"column {values.name!r} of {origin}: {values[row]!r} (row {row + 1}) is not "
            f"{_noun(kind)}{_HINTS.get(kind, '')}"
        )
        raise SourceError(msg)
    return converted.alias(values.name)


def _noun(kind: ColumnType) -> str:
    return _ARTICLES.get(kind, f"a {kind}")


def content_digest(frame: pl.DataFrame) -> str:
    """A digest of a table's rows, whatever their order: equal for equal content, in one process.

    The row hashes Polars computes are not stable across Polars versions, so the digest may
    differ after an upgrade; it is for telling a changed table from an unchanged one.

    >>> a = pl.DataFrame({"id": [1, 2], "v": ["x", "y"]})
    >>> content_digest(a) == content_digest(a.reverse())
    True
    """
    # Summing the rows' hashes (wrapping at 2**64) ignores order but not duplicates.
    total = frame.hash_rows().sum() if frame.height else 0
    schema = ",".join(f"{name}:{dtype}" for name, dtype in frame.schema.items())
    return hashlib.sha256(f"{schema}|{frame.height}|{total}".encode()).hexdigest()[:16]
