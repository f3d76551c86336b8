"""What a reading is: the canonical columns, the reading format that finds them, dead letters.

A batch of readings is a Polars frame with the canonical columns ``device_id`` (string),
``ts`` (UTC microsecond timestamp), one column per declared measurement, one per tag and, if
configured, ``message_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

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

    def wire_schema(self, time_type: pl.DataType) -> dict[str, pl.DataType]:
        """The payload's own field names and types, with ``time_type`` for the time field."""
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
