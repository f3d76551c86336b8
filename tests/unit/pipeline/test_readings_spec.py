"""The readings section in YAML: measurements and tags by name or by path, and their errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sensorstream import Pipeline, TumblingWindow
from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import MeasurementSpec, parse_spec
from sensorstream.readings import ReadingFormat
from sensorstream.sources import FileSourceSettings

DOORS = """\
name: doors
source: {type: file, path: events.ndjson}
readings:
  device_field: deviceId
  measurements:
    eventType: string
    coordinates: {type: latlon, path: payload.location.loc}
  tags: {region: payload.location.region, city: payload.location.city}
steps:
  - name: per_minute
    window: {type: tumbling, size: 1m}
    aggregates: [count]
"""


def test_measurements_and_tags_may_be_declared_by_path() -> None:
    fmt = parse_spec(DOORS).stream().readings.to_format()
    assert fmt == ReadingFormat(
        measurements={"eventType": "string", "coordinates": "latlon"},
        device_field="deviceId",
        tags=("region", "city"),
        paths={
            "coordinates": "payload.location.loc",
            "region": "payload.location.region",
            "city": "payload.location.city",
        },
    )
    assert fmt.nested


def test_a_path_that_is_the_name_itself_is_the_plain_form() -> None:
    long = DOORS.replace(
        "{type: latlon, path: payload.location.loc}", "{type: latlon, path: coordinates}"
    ).replace("{region: payload.location.region, city: payload.location.city}", "{city: city}")
    short = DOORS.replace("{type: latlon, path: payload.location.loc}", "latlon").replace(
        "{region: payload.location.region, city: payload.location.city}", "[city]"
    )
    assert parse_spec(long) == parse_spec(short)
    assert parse_spec(long).stream().readings.measurements["coordinates"] == "latlon"
    assert parse_spec(long).stream().readings.tags == ["city"]


def test_device_time_and_message_id_fields_may_be_paths() -> None:
    text = DOORS.replace(
        "device_field: deviceId",
        "device_field: meta.deviceId\n  time_field: meta.ts\n  message_id_field: meta.id",
    )
    fmt = parse_spec(text).stream().readings.to_format()
    assert (fmt.device_field, fmt.time_field, fmt.message_id_field) == (
        "meta.deviceId",
        "meta.ts",
        "meta.id",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("path: payload.location.loc", "path: payload..loc"),
            "line 7, readings.measurements.coordinates.path: invalid field 'payload..loc'",
        ),
        (
            ("{type: latlon,", "{type: decimal,"),
            "line 7, readings.measurements.coordinates.type: Input should be 'float', 'int', "
            "'string', 'bool', 'geo' or 'latlon' (got 'decimal')",
        ),
        (
            ("{type: latlon, path:", "{type: latlon, pth:"),
            "line 7, readings.measurements.coordinates.pth: unknown field",
        ),
        (
            ("{type: latlon, path: payload.location.loc}", "[latlon]"),
            "line 7, readings.measurements.coordinates: a measurement is its type (float, int, "
            "string, bool, geo, latlon) or a mapping with its type and path",
        ),
        (
            ("city: payload.location.city}", "city: 5}"),
            "line 8, readings.tags.city: Input should be a valid string",
        ),
        (
            ("{region: payload.location.region, city: payload.location.city}", "region"),
            "line 8, readings.tags: tags are a list of names ([room, site]) or a mapping",
        ),
        (
            ("{region: payload.location.region, city: payload.location.city}", "[site.name]"),
            "line 8, readings.tags: the tag name 'site.name' holds a dot",
        ),
        (
            ("eventType: string", "event.type: string"),
            "line 5, readings.measurements: the measurement name 'event.type' holds a dot",
        ),
        (
            ("device_field: deviceId", "device_field: payload."),
            "line 4, readings.device_field: invalid field 'payload.'",
        ),
        (
            ("device_field: deviceId", "device_field: deviceId\n  time_zone: Europe/Zurch"),
            "line 5, readings.time_zone: unknown time zone 'Europe/Zurch': write an IANA time "
            "zone name such as Europe/Zurich, America/New_York or UTC",
        ),
        (
            ("region: payload.location.region", "region: payload.location"),
            "readings: 'region' is read from 'payload.location', and 'payload.location.loc' "
            "lies inside it",
        ),
    ],
)
def test_readings_errors_name_the_field_and_its_line(change: tuple[str, str], message: str) -> None:
    assert change[0] in DOORS
    with pytest.raises(ConfigError) as error:
        parse_spec(DOORS.replace(*change), origin="pipeline.yaml")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "change",
    [
        ("path: payload.location.loc", "path: payload.loc"),
        ("region: payload.location.region", "region: payload.region"),
        ("device_field: deviceId", "device_field: payload.deviceId"),
        ("{type: latlon, path: payload.location.loc}", "latlon"),
    ],
)
def test_the_fingerprint_changes_when_a_path_does(change: tuple[str, str]) -> None:
    assert change[0] in DOORS
    assert parse_spec(DOORS).fingerprint() != parse_spec(DOORS.replace(*change)).fingerprint()


ZURICH = DOORS.replace(
    "device_field: deviceId", "device_field: deviceId\n  time_zone: Europe/Zurich"
)


def test_the_time_zone_reaches_the_format_and_round_trips_through_yaml() -> None:
    spec = parse_spec(ZURICH)
    assert spec.stream().readings.to_format().time_zone == "Europe/Zurich"
    assert parse_spec(spec.to_yaml()) == spec
    assert "time_zone: Europe/Zurich" in spec.to_yaml()
    assert parse_spec(DOORS).stream().readings.to_format().time_zone == "UTC"
    assert "time_zone" not in parse_spec(DOORS).to_yaml()


def test_the_fingerprint_changes_with_the_time_zone() -> None:
    assert parse_spec(ZURICH).fingerprint() != parse_spec(DOORS).fingerprint()
    utc = DOORS.replace("device_field: deviceId", "device_field: deviceId\n  time_zone: UTC")
    assert parse_spec(utc).fingerprint() == parse_spec(DOORS).fingerprint()


def test_a_pipeline_written_before_time_zone_keeps_its_fingerprint_and_checkpoints() -> None:
    # The fingerprint DOORS had before readings.time_zone existed: the default leaves it be.
    assert parse_spec(DOORS).fingerprint() == "922956144fcdb97c"


def test_the_python_builder_takes_paths_too() -> None:
    built = Pipeline(
        "doors",
        source=FileSourceSettings(type="file", path=Path("events.ndjson")),
        measurements={
            "eventType": "string",
            "coordinates": MeasurementSpec(type="latlon", path="payload.location.loc"),
        },
    ).readings(
        device_field="deviceId",
        tags={"region": "payload.location.region", "city": "payload.location.city"},
    )
    spec = built.window("per_minute", TumblingWindow(timedelta(minutes=1)), ["count"]).spec()
    assert spec == parse_spec(DOORS)
    assert parse_spec(spec.to_yaml()) == spec


def test_the_python_builder_takes_the_time_zone_too() -> None:
    built = Pipeline(
        "doors",
        source=FileSourceSettings(type="file", path=Path("events.ndjson")),
        measurements={
            "eventType": "string",
            "coordinates": MeasurementSpec(type="latlon", path="payload.location.loc"),
        },
    ).readings(
        device_field="deviceId",
        time_zone="Europe/Zurich",
        tags={"region": "payload.location.region", "city": "payload.location.city"},
    )
    spec = built.window("per_minute", TumblingWindow(timedelta(minutes=1)), ["count"]).spec()
    assert spec == parse_spec(ZURICH)


TWO_STREAMS = """\
name: two
streams:
  devices:
    source: {type: file, path: devices.ndjson}
    readings: {measurements: {status: string}}
  events:
    source: {type: file, path: events.ndjson}
    readings: {measurements: {eventType: string}}
steps:
  - name: per_minute
    input: events
    window: {type: tumbling, size: 1m}
    aggregates: [count]
"""


def test_each_streams_time_zone_is_part_of_the_fingerprint() -> None:
    zurich = TWO_STREAMS.replace(
        "{measurements: {eventType: string}}",
        "{time_zone: Europe/Zurich, measurements: {eventType: string}}",
    )
    utc = TWO_STREAMS.replace(
        "{measurements: {eventType: string}}", "{time_zone: UTC, measurements: {eventType: string}}"
    )
    assert parse_spec(zurich).fingerprint() != parse_spec(TWO_STREAMS).fingerprint()
    assert parse_spec(utc).fingerprint() == parse_spec(TWO_STREAMS).fingerprint()
    assert parse_spec(zurich).streams["events"].readings.to_format().time_zone == "Europe/Zurich"
