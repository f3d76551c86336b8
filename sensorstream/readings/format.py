"""What a reading is: the canonical columns, the reading format that finds them, dead letters.

A batch of readings is a Polars frame with the canonical columns ``device_id`` (string),
``ts`` (UTC microsecond timestamp), one column per declared measurement, one per tag and, if
configured, ``message_id``. Each column's value is found in a payload by its *field*, a
path of keys separated by dots (``payload.location.region`` is the key ``region`` of the
object ``location`` of the object ``payload``); a key with a dot in its name cannot be
read. A dead letter keeps the payload as the bytes that arrived (up to
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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from sensorstream.errors import ConfigError
from sensorstream.readings.reasons import REASONS

MeasurementType = Literal["float", "int", "string", "bool", "geo", "latlon"]
TimeUnit = Literal["auto", "s", "ms", "us", "ns"]

DEVICE = "device_id"
TS = "ts"
MESSAGE_ID = "message_id"
RESERVED = frozenset({DEVICE, TS, MESSAGE_ID})

TS_TYPE = pl.Datetime("us", "UTC")
GEO_TYPE = pl.Struct({"lat": pl.Float64, "lon": pl.Float64})
# Each measurement type's canonical column type; a latlon value is the text "lat,lon" on the
# wire and a geo value once decoded, so that later steps see one kind of position.
_POLARS_TYPES: dict[str, pl.DataType] = {
    "float": pl.Float64(),
    "int": pl.Int64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "geo": GEO_TYPE,
    "latlon": GEO_TYPE,
}
_WIRE_TYPES: dict[str, pl.DataType] = {**_POLARS_TYPES, "latlon": pl.String()}
PATH_SEPARATOR = "."
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


def check_time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone that both zoneinfo and Polars know; else a ConfigError.

    >>> check_time_zone("Europe/Zurich")
    'Europe/Zurich'
    """
    known = bool(name)
    if known:
        try:
            ZoneInfo(name)
            # Polars (chrono-tz) converts the times; it refuses some names zoneinfo reads
            # from the system, such as localtime.
            pl.Series([None], dtype=pl.Datetime("us")).dt.replace_time_zone(name)
        except (ZoneInfoNotFoundError, ValueError, TypeError, pl.exceptions.PolarsError):
            known = False
    if not known:
        msg = (
            f"unknown time zone {name!r}: write an IANA time zone name such as "
            "Europe/Zurich, America/New_York or UTC"
        )
        raise ConfigError(msg)
    return name


def path_keys(field: str) -> tuple[str, ...]:
    """The keys leading to a field, from the payload's top: ``"a.b"`` is ``("a", "b")``.

    >>> path_keys("payload.location.region"), path_keys("ts")
    (('payload', 'location', 'region'), ('ts',))
    """
    return tuple(field.split(PATH_SEPARATOR))


@dataclass(frozen=True)
class ReadingFormat:
    """How to find a reading's parts in a payload, and the limits a valid reading keeps.

    ``device_field``, ``time_field`` and ``message_id_field`` are fields: a top-level key,
    or a path of keys separated by dots into nested objects (``payload.deviceId``). A
    measurement or tag is read from the field of its own name, unless ``paths`` gives it
    another one; the canonical column keeps the declared name either way.
    ``time_zone`` (an IANA name) is the zone of a time without one: ISO 8601 text with no
    offset, or a naive timestamp column; a time with its own zone keeps it.

    >>> fmt = ReadingFormat(measurements={"temperature": "float"})
    >>> fmt.canonical_schema()["temperature"]
    Float64
    >>> nested = ReadingFormat(
    ...     measurements={"where": "latlon"},
    ...     tags=("region",),
    ...     paths={"where": "payload.location.loc", "region": "payload.location.region"},
    ... )
    >>> nested.wire_schema(pl.Int64())["payload"]
    Struct({'location': Struct({'loc': String, 'region': String})})
    """

    measurements: Mapping[str, MeasurementType]
    device_field: str = DEVICE
    time_field: str = TS
    time_unit: TimeUnit = "auto"
    time_zone: str = "UTC"
    tags: Sequence[str] = ()
    message_id_field: str | None = None
    max_future: timedelta = timedelta(hours=1)
    min_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    limits: Limits = Limits()
    # Measurement or tag name -> the field it is read from, where that is not its own name.
    paths: Mapping[str, str] = field(default_factory=dict)
    # Whether some field is nested (a path of more than one key): set from the fields.
    nested: bool = field(init=False, repr=False, compare=False)

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
        try:
            check_time_zone(self.time_zone)
        except ConfigError as error:
            msg = f"readings.time_zone: {error}"
            raise ConfigError(msg) from None
        object.__setattr__(self, "measurements", dict(self.measurements))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "paths", dict(self.paths))
        self._check_fields()
        nested = any(PATH_SEPARATOR in where for where in self.fields().values())
        object.__setattr__(self, "nested", nested)

    def _check_fields(self) -> None:
        named = set(self.measurements) | set(self.tags)
        for name in sorted(named):
            if PATH_SEPARATOR in name:
                msg = (
                    f"the name {name!r} holds a dot, which separates the keys of a path: "
                    "name the measurement or tag without one and give the dotted field as "
                    "its path"
                )
                raise ConfigError(msg)
        unknown = sorted(set(self.paths) - named)
        if unknown:
            msg = f"paths are given for {unknown}, which are neither measurements nor tags"
            raise ConfigError(msg)
        fields = self.fields()
        for column, where in fields.items():
            keys = path_keys(where)
            if not all(keys):
                msg = (
                    f"the field of {column!r} is {where!r}: write keys separated by single "
                    "dots, e.g. payload.location.region"
                )
                raise ConfigError(msg)
        types = self.wire_fields(pl.String())
        for column, where in fields.items():
            inner = next((f for f in types if f.startswith(where + PATH_SEPARATOR)), None)
            if inner is not None:
                msg = (
                    f"{column!r} is read from {where!r}, and {inner!r} lies inside it: a "
                    "field cannot be both a value and an object holding another field"
                )
                raise ConfigError(msg)
        by_field: dict[str, tuple[str, pl.DataType]] = {}
        for column, where in fields.items():
            dtype = self._wire_type(column)
            seen = by_field.setdefault(where, (column, dtype))
            if seen[1] != dtype:
                msg = (
                    f"{seen[0]!r} and {column!r} are both read from {where!r}, as "
                    f"{seen[1]} and {dtype}: give each its own field"
                )
                raise ConfigError(msg)

    def field_of(self, column: str) -> str:
        """The field (a dotted path) a canonical column's value is read from."""
        if column == DEVICE:
            return self.device_field
        if column == TS:
            return self.time_field
        if column == MESSAGE_ID and self.message_id_field:
            return self.message_id_field
        return self.paths.get(column, column)

    def fields(self) -> dict[str, str]:
        """Each canonical column and the field it is read from, in canonical order."""
        return {column: self.field_of(column) for column in self.canonical_schema()}

    def canonical_schema(self) -> dict[str, pl.DataType]:
        """The columns of a decoded batch of readings, in order."""
        schema: dict[str, pl.DataType] = {DEVICE: pl.String(), TS: TS_TYPE}
        schema.update({m: _POLARS_TYPES[k] for m, k in self.measurements.items()})
        schema.update({t: pl.String() for t in self.tags})
        if self.message_id_field:
            schema[MESSAGE_ID] = pl.String()
        return schema

    def _wire_type(self, column: str) -> pl.DataType:
        kind = self.measurements.get(column)
        return pl.String() if kind is None else _WIRE_TYPES[kind]

    def wire_fields(self, time_type: pl.DataType) -> dict[str, pl.DataType]:
        """Each field the pipeline reads, by its dotted path, and the type it is read as.

        ``time_type`` is the time field's. For a format without nested fields this is
        :meth:`wire_schema`.
        """
        schema: dict[str, pl.DataType] = {
            self.device_field: pl.String(),
            self.time_field: time_type,
        }
        schema.update({self.field_of(m): _WIRE_TYPES[k] for m, k in self.measurements.items()})
        schema.update({self.field_of(t): pl.String() for t in self.tags})
        if self.message_id_field:
            schema[self.message_id_field] = pl.String()
        return schema

    def wire_schema(self, time_type: pl.DataType) -> dict[str, pl.DataType]:
        """The payload's top-level keys and types, with ``time_type`` for the time field.

        A nested field makes its top-level key a struct of the keys on the way to it,
        which is how Polars' reader takes nested objects.
        """
        fields = self.wire_fields(time_type)
        return _nested_schema(fields) if self.nested else fields


def _nested_schema(fields: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    """Fields by dotted path as a schema of top-level keys, nested ones grouped in structs.

    >>> _nested_schema({"id": pl.String(), "p.a": pl.Int64(), "p.b.c": pl.String()})
    {'id': String, 'p': Struct({'a': Int64, 'b': Struct({'c': String})})}
    """
    groups: dict[str, dict[str, pl.DataType]] = {}
    schema: dict[str, pl.DataType] = {}
    for where, dtype in fields.items():
        key, _, rest = where.partition(PATH_SEPARATOR)
        if rest:
            groups.setdefault(key, {})[rest] = dtype
            schema.setdefault(key, pl.Null())  # holds the key's place until its struct is made
        else:
            schema[key] = dtype
    for key, inner in groups.items():
        schema[key] = pl.Struct(_nested_schema(inner))
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
