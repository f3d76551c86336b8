"""The Python builder declares streams, tables and joins exactly as YAML does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sensorstream import Pipeline, TumblingWindow
from sensorstream.pipeline.spec import parse_spec
from sensorstream.sources import FileSourceSettings
from sensorstream.sources.tables import FileTableSettings

YAML = """
name: access
streams:
  devices:
    source: {type: file, path: devices.ndjson}
    readings:
      device_field: deviceId
      measurements: {status: string}
      tags: {district: payload.location.region}
  events:
    source: {type: file, path: events.ndjson}
    readings: {device_field: deviceId, measurements: {eventType: string}}
tables:
  floors:
    source: {type: file, path: floors.csv}
    columns: {floor: int}
steps:
  - {name: doors, input: devices, table: {columns: [district]}}
  - name: located
    input: events
    join: {table: doors, mode: as_of, missing: dead_letter}
  - {name: floored, input: located, join: {table: floors}}
  - name: per_district
    input: floored
    key: [district, floor]
    window: {type: tumbling, size: 1m}
    aggregates: [count]
  - name: low_high
    relation:
      left: per_district
      right: per_district
      left_where: floor = 0
      right_where: floor = 1
      value: count
      key: [district]
"""


def test_streams_tables_joins_and_relations_build_the_spec_yaml_gives() -> None:
    built = (
        Pipeline("access")
        .stream(
            "devices",
            FileSourceSettings(path=Path("devices.ndjson")),
            {"status": "string"},
            device_field="deviceId",
            tags={"district": "payload.location.region"},
        )
        .stream(
            "events",
            FileSourceSettings(path=Path("events.ndjson")),
            {"eventType": "string"},
            device_field="deviceId",
        )
        .reference_table("floors", FileTableSettings(path=Path("floors.csv")), {"floor": "int"})
        .table("doors", input="devices", columns=["district"])
        .join("located", input="events", table="doors", mode="as_of", missing="dead_letter")
        .join("floored", input="located", table="floors")
        .window(
            "per_district",
            TumblingWindow(timedelta(minutes=1)),
            ["count"],
            key=["district", "floor"],
            input="floored",
        )
        .relation(
            "low_high",
            left="per_district",
            right="per_district",
            left_where="floor = 0",
            right_where="floor = 1",
            value="count",
            key=["district"],
        )
    )
    assert built.spec() == parse_spec(YAML)
    assert parse_spec(built.to_yaml()) == built.spec()
