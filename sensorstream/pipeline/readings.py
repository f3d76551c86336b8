"""The ``readings:`` part of a pipeline as YAML writes it: where each field sits, what is valid.

::

    readings:
      device_field: deviceId               # device_field, time_field may be dotted paths
      time_field: ts
      time_zone: Europe/Zurich             # the zone of a time without one (default UTC)
      measurements:
        temperature: float                 # a type...
        coordinates: {type: latlon, path: payload.location.loc}   # ...or a type and a path
      tags: {region: payload.location.region}                      # or a list: [room, site]
      limits: {max_payload_bytes: 1MiB}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from sensorstream.durations import Duration
from sensorstream.errors import ConfigError
from sensorstream.readings import Limits, MeasurementType, ReadingFormat, TimeUnit
from sensorstream.readings.format import PATH_SEPARATOR, check_time_zone, path_keys


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DEFAULT_LIMITS = Limits()


class LimitsSpec(_Model):
    """How large a payload may be (sizes as ``1MiB``, ``64KiB`` or a number of bytes).

    A payload past a limit becomes a dead letter saying which limit; see
    :class:`~sensorstream.readings.Limits`.
    """

    max_payload_bytes: ByteSize = Field(default=ByteSize(_DEFAULT_LIMITS.max_payload_bytes), gt=0)
    max_fields: int = Field(default=_DEFAULT_LIMITS.max_fields, gt=0)
    max_id_bytes: ByteSize = Field(default=ByteSize(_DEFAULT_LIMITS.max_id_bytes), gt=0)
    max_raw_bytes: ByteSize = Field(default=ByteSize(_DEFAULT_LIMITS.max_raw_bytes), gt=0)

    def to_limits(self) -> Limits:
        """The engine-side limits."""
        return Limits(
            max_payload_bytes=int(self.max_payload_bytes),
            max_fields=self.max_fields,
            max_id_bytes=int(self.max_id_bytes),
            max_raw_bytes=int(self.max_raw_bytes),
        )


def _check_field(value: str) -> str:
    if not value or not all(path_keys(value)):
        msg = (
            f"invalid field {value!r}: write a key, or keys separated by single dots for a "
            "nested field, e.g. payload.location.region (a key with a dot in its name cannot "
            "be read)"
        )
        raise ValueError(msg)
    return value


def _check_time_zone(value: str) -> str:
    try:
        return check_time_zone(value)
    except ConfigError as error:
        raise ValueError(str(error)) from None


# An IANA time zone name (Europe/Zurich, UTC) that zoneinfo and Polars both know.
TimeZone = Annotated[str, AfterValidator(_check_time_zone)]
# Where a value sits in a payload: a top-level key, or keys separated by dots into nested
# objects (payload.location.region).
FieldPath = Annotated[str, AfterValidator(_check_field)]


class MeasurementSpec(_Model):
    """A measurement read from another field than its name: ``{type: float, path: p.temp}``."""

    type: MeasurementType
    path: FieldPath | None = None


def _measurement_form(value: object) -> str:
    return "type and path" if isinstance(value, (dict, MeasurementSpec)) else "type name"


def _tags_form(value: object) -> str:
    return "names and paths" if isinstance(value, dict) else "list of names"


def _measurement_shape(value: object) -> object:
    if not isinstance(value, (str, dict, MeasurementSpec)):
        msg = (
            f"a measurement is its type ({', '.join(get_args(MeasurementType))}) or a mapping "
            f"with its type and path ({{type: latlon, path: payload.location.loc}}), got {value!r}"
        )
        raise ValueError(msg)
    return value


def _tags_shape(value: object) -> object:
    if not isinstance(value, (list, tuple, dict)):
        msg = (
            "tags are a list of names ([room, site]) or a mapping of name to path "
            f"({{region: payload.location.region}}), got {value!r}"
        )
        raise ValueError(msg)
    return value


def _no_dots(names: Iterable[str], what: str) -> None:
    for name in names:
        if PATH_SEPARATOR in name:
            msg = (
                f"the {what} name {name!r} holds a dot, which separates the keys of a path: "
                f"name the {what} without one and give the dotted field as its path"
            )
            raise ValueError(msg)


# A measurement is its type (temperature: float) or a mapping with its type and field. The
# tags (with spaces: no YAML key has one) keep them apart in error locations.
Measurement = Annotated[
    Annotated[MeasurementType, Tag("type name")] | Annotated[MeasurementSpec, Tag("type and path")],
    Discriminator(_measurement_form),
    BeforeValidator(_measurement_shape),
]
# Tags are a list of names, each read from the field of its name, or name -> field.
Tags = Annotated[
    Annotated[list[str], Tag("list of names")]
    | Annotated[dict[str, FieldPath], Tag("names and paths")],
    Discriminator(_tags_form),
    BeforeValidator(_tags_shape),
]


class ReadingsSpec(_Model):
    """Where a payload keeps each part of a reading, and what a valid reading is.

    A measurement is declared by its type (``temperature: float``) or, when it is read
    from another field, by its type and path (``loc: {type: latlon, path:
    payload.location.loc}``); tags are a list of names or a mapping of name to path. The
    device, time and message id fields may be paths too (``payload.deviceId``). Each form
    is kept in its shortest spelling, so two spellings of one format are equal specs.

    ``time_zone`` (an IANA name, default ``UTC``) is the zone of a time given without one:
    ISO 8601 text such as ``2024-05-12 02:11:37`` (or with ``T``), or a naive Parquet
    timestamp, is local time there, converted to UTC. A time with its own zone (``Z``,
    ``+02:00``) keeps it, and epoch numbers are UTC. A local time the zone skips when
    daylight saving time begins is a ``nonexistent_local_time`` dead letter; one it repeats
    when daylight saving time ends is the earlier of its two instants.

    >>> spec = ReadingsSpec(measurements={"t": "float"}, time_zone="Europe/Zurich")
    >>> spec.to_format().time_zone
    'Europe/Zurich'
    """

    measurements: dict[str, Measurement]
    device_field: FieldPath = "device_id"
    time_field: FieldPath = "ts"
    time_unit: TimeUnit = "auto"
    time_zone: TimeZone = "UTC"
    tags: Tags = []
    message_id_field: FieldPath | None = None
    max_future: Duration = Field(default="1h", validate_default=True)
    limits: LimitsSpec = LimitsSpec()

    @field_validator("measurements")
    @classmethod
    def _shortest_measurements(
        cls, measurements: dict[str, MeasurementType | MeasurementSpec]
    ) -> dict[str, MeasurementType | MeasurementSpec]:
        _no_dots(measurements, "measurement")
        return {
            name: measurement.type
            if isinstance(measurement, MeasurementSpec) and measurement.path in (None, name)
            else measurement
            for name, measurement in measurements.items()
        }

    @field_validator("tags")
    @classmethod
    def _shortest_tags(cls, tags: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        _no_dots(tags, "tag")
        if isinstance(tags, dict) and all(name == where for name, where in tags.items()):
            return list(tags)
        return tags

    @model_validator(mode="after")
    def _fits_together(self) -> ReadingsSpec:
        try:
            self.to_format()
        except ConfigError as error:
            raise ValueError(str(error)) from None
        return self

    def to_format(self) -> ReadingFormat:
        """The engine-side reading format."""
        measurements: dict[str, MeasurementType] = {}
        paths: dict[str, str] = {}
        for name, measurement in self.measurements.items():
            if isinstance(measurement, MeasurementSpec):
                measurements[name] = measurement.type
                if measurement.path is not None:
                    paths[name] = measurement.path
            else:
                measurements[name] = measurement
        if isinstance(self.tags, dict):
            paths.update(self.tags)
        return ReadingFormat(
            measurements=measurements,
            device_field=self.device_field,
            time_field=self.time_field,
            time_unit=self.time_unit,
            time_zone=self.time_zone,
            tags=tuple(self.tags),
            message_id_field=self.message_id_field,
            max_future=self.max_future,
            limits=self.limits.to_limits(),
            paths={name: where for name, where in paths.items() if where != name},
        )
