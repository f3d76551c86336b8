"""What a reading is: the canonical columns, the reading format that finds them, dead letters.

A batch of readings is a Polars frame with the canonical columns ``device_id`` (string),
``ts`` (UTC microsecond timestamp), one column per declared measurement, one per tag and, if
configured, ``message_id``. A dead letter keeps the payload as the bytes that arrived (up to
:attr:`Limits.max_raw_bytes`, then its first bytes), its full length and SHA-256, a stable
reason code (:mod:`~sensorstream.readings.reasons`), the message, where it came from and
when it arrived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import polars as pl

from sensorstream.errors import ConfigError
from sensorstream.readings.reasons import REASONS

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
    "reason_code": pl.String(),
    "reason": pl.String(),
    "origin": pl.String(),
    "raw": pl.Binary(),
    "raw_length": pl.Int64(),
    "raw_sha256": pl.String(),
    "arrived_at": TS_TYPE,
}


@dataclass(frozen=True)
class Limits:
    """How large a payload may be; anything past a limit becomes a dead letter saying which.

    The limits keep one hostile or broken payload from costing unbounded memory, storage or
    result keys: ``max_payload_bytes`` per payload (a longer line is streamed past, never
    held whole), ``max_fields`` per object (nested ones counted too), ``max_id_bytes`` per
    device id, tag value or message id (each may become a results key), and
    ``max_raw_bytes`` of a dead letter's payload kept in the store (past it: the first bytes,
    with the full length and SHA-256 beside them).

    >>> Limits(max_payload_bytes=4096).max_fields
    1000
    """

    max_payload_bytes: int = 1024 * 1024
    max_fields: int = 1000
    max_id_bytes: int = 256
    max_raw_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("max_payload_bytes", "max_fields", "max_id_bytes", "max_raw_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                msg = f"readings.limits.{name} must be a whole number above 0, got {value!r}"
                raise ConfigError(msg)


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
    limits: Limits = Limits()

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
    """The outcome of decoding one chunk: valid readings, dead letters, payloads, blank lines.

    ``payloads`` counts what was read as a payload (a reading or a dead letter each);
    ``blank`` the lines with nothing but white space, which are no payload but are counted
    so that every line of an input is accounted for.
    """

    readings: pl.DataFrame
    dead_letters: pl.DataFrame
    payloads: int = field(default=0)
    blank: int = field(default=0)


@dataclass(frozen=True)
class Truncated:
    """A payload too large to keep whole: its first bytes, its full length and its SHA-256."""

    head: bytes
    length: int
    sha256: str


def empty_dead_letters() -> pl.DataFrame:
    """A dead-letter frame with no rows."""
    return pl.DataFrame(schema=DEAD_LETTER_SCHEMA)


def dead_letters(
    raws: Sequence[bytes | Truncated],
    codes: Sequence[str],
    reasons: Sequence[str],
    origins: Sequence[str],
    arrived_at: datetime,
    *,
    max_raw_bytes: int = Limits.max_raw_bytes,
) -> pl.DataFrame:
    """Build a dead-letter frame from parallel lists; payloads past ``max_raw_bytes`` are cut.

    >>> frame = dead_letters(
    ...     [b"{oops"],
    ...     ["invalid_json"],
    ...     ["invalid JSON"],
    ...     ["line 1"],
    ...     datetime(2024, 1, 1, tzinfo=UTC),
    ... )
    >>> frame["raw"][0], frame["raw_length"][0]
    (b'{oops', 5)
    """
    unknown = sorted(set(codes) - REASONS.keys())
    if unknown:  # a programming error: every code must be documented in REASONS
        msg = f"dead-letter reason codes {unknown} are not in sensorstream.readings.reasons"
        raise ValueError(msg)
    kept: list[bytes] = []
    lengths: list[int] = []
    digests: list[str] = []
    for raw in raws:
        if isinstance(raw, Truncated):
            kept.append(raw.head[:max_raw_bytes])
            lengths.append(raw.length)
            digests.append(raw.sha256)
        else:
            kept.append(raw[:max_raw_bytes])
            lengths.append(len(raw))
            digests.append(hashlib.sha256(raw).hexdigest())
    return pl.DataFrame(
        {
            "reason_code": list(codes),
            "reason": list(reasons),
            "origin": list(origins),
            "raw": kept,
            "raw_length": lengths,
            "raw_sha256": digests,
            "arrived_at": [arrived_at] * len(kept),
        },
        schema=DEAD_LETTER_SCHEMA,
    )
