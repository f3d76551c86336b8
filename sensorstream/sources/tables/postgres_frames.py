"""A PostgreSQL query's result as a Polars frame: column types from the result, not guessed.

Rows come in PostgreSQL's binary format and are built into a frame in one call. Timestamps
with a time zone are loaded as naive UTC values and given their zone by Polars afterwards,
since Polars builds a column from zone-aware Python datetimes several times slower;
``numeric`` becomes a float and ``uuid`` a string, so the frame needs no Python objects. A
column of any other type (arrays, JSON, intervals, network addresses) is an error that says
how to cast it in the query, rather than a column whose type Polars would have to guess.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import polars as pl
import psycopg
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.types.datetime import TimestampBinaryLoader
from psycopg.types.numeric import NumericBinaryLoader

from sensorstream.errors import SourceError

POLARS_TYPES: dict[str, pl.DataType] = {
    "int2": pl.Int64(),
    "int4": pl.Int64(),
    "int8": pl.Int64(),
    "oid": pl.Int64(),
    "float4": pl.Float64(),
    "float8": pl.Float64(),
    "numeric": pl.Float64(),
    "text": pl.String(),
    "varchar": pl.String(),
    "bpchar": pl.String(),
    "name": pl.String(),
    "uuid": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    # Loaded naive (see _NaiveUtcLoader) and given the zone afterwards.
    "timestamptz": pl.Datetime("us"),
}


class _NumericAsFloat(Loader):
    """``numeric`` as a float: a Decimal would make Polars hold Python objects."""

    format = Format.BINARY

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._decimal = NumericBinaryLoader(oid, context)

    def load(self, data: Buffer) -> float:
        return float(self._decimal.load(data))


class _UuidAsText(Loader):
    """``uuid`` as its text form, the form a stream's readings carry it in."""

    format = Format.BINARY

    def load(self, data: Buffer) -> str:
        return str(UUID(bytes=bytes(data)))


def prepare(connection: psycopg.Connection[Any]) -> None:
    """Set up ``connection`` to load results the way :func:`fetch_frame` builds them."""
    adapters = connection.adapters
    # The binary form of a timestamptz is microseconds since 2000 in UTC, whatever the
    # session's time zone: the naive loader reads exactly that instant.
    adapters.register_loader("timestamptz", TimestampBinaryLoader)
    adapters.register_loader("numeric", _NumericAsFloat)
    adapters.register_loader("uuid", _UuidAsText)


def fetch_frame(cursor: psycopg.Cursor[Any], table: str) -> pl.DataFrame:
    """The rows of the query ``cursor`` just ran (on a :func:`prepare` d connection) as a frame.

    Raises SourceError naming the table if a column's type has no Polars counterpart, or a
    column name appears twice.
    """
    description = cursor.description
    if description is None:
        msg = f"table {table!r}: the query returns no rows (it must be a SELECT)"
        raise SourceError(msg)
    names = [column.name for column in description]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        msg = (
            f"table {table!r}: the query returns the column {repeated[0]!r} twice; "
            "give one of them another name (AS ...)"
        )
        raise SourceError(msg)
    schema: dict[str, pl.DataType] = {}
    zoned: list[str] = []
    for column in description:
        info = cursor.adapters.types.get(column.type_code)
        # An array's OID finds the type of its elements: tell them apart by the OID.
        kind = info.name if info is not None and info.oid == column.type_code else None
        if kind is None or kind not in POLARS_TYPES:
            if info is None:
                what = f"a type without a name here (OID {column.type_code})"
            else:
                what = f"type {info.name}" if kind else f"type {info.name}[]"
            msg = (
                f"table {table!r}: column {column.name!r} has PostgreSQL {what}, which a "
                f"reference table cannot hold; cast it in the query, e.g. "
                f"{column.name}::text AS {column.name}"
            )
            raise SourceError(msg)
        schema[column.name] = POLARS_TYPES[kind]
        if kind == "timestamptz":
            zoned.append(column.name)
    frame = pl.DataFrame(cursor.fetchall(), schema=schema, orient="row")
    if zoned:
        frame = frame.with_columns(pl.col(zoned).dt.replace_time_zone("UTC"))
    return frame
