"""Nested fields from each kind of file: NDJSON objects, Parquet structs, flattened CSV columns."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat
from sensorstream.sources import FileSource, SimulatorSource
from tests.unit.sources.helpers import clock, read_all, readings_in

FORMAT = ReadingFormat(
    measurements={"eventType": "string", "coordinates": "latlon"},
    device_field="deviceId",
    tags=("city",),
    paths={"coordinates": "payload.location.loc", "city": "payload.location.city"},
)
TS = 1_715_480_000_000
ROWS = [
    {"deviceId": "door-17", "ts": TS, "eventType": "accessRejected", "payload": None},
    {
        "deviceId": "door-17",
        "ts": TS + 1000,
        "eventType": None,
        "payload": {"location": {"city": "Zurich", "loc": "47.37,8.52"}},
    },
]
EXPECTED = [
    ("door-17", "accessRejected", None, None),
    ("door-17", None, {"lat": 47.37, "lon": 8.52}, "Zurich"),
]


def decoded_rows(source: FileSource) -> list[tuple[object, ...]]:
    source.prepare(FORMAT)
    readings = readings_in(read_all(source, FORMAT), FORMAT)
    return readings.select("device_id", "eventType", "coordinates", "city").rows()


def test_ndjson_objects_are_read_by_path(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text("".join(f"{json.dumps(row)}\n" for row in ROWS))
    assert decoded_rows(FileSource(path)) == EXPECTED


def test_parquet_struct_columns_are_read_by_path(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame(ROWS).write_parquet(path)
    assert decoded_rows(FileSource(path)) == EXPECTED


def test_parquet_may_nest_a_timestamp_typed_time(tmp_path: Path) -> None:
    fmt = ReadingFormat(measurements={"t": "float"}, time_field="meta.at")
    path = tmp_path / "nested_time.parquet"
    at = pl.Series([TS], dtype=pl.Int64).cast(pl.Datetime("ms", "UTC"))
    pl.DataFrame({"device_id": ["a"], "t": [1.0]}).with_columns(
        pl.struct(at.alias("at")).alias("meta")
    ).write_parquet(path)
    readings = readings_in(read_all(FileSource(path), fmt), fmt)
    assert readings["ts"].dt.epoch("ms").to_list() == [TS]


def test_a_csv_file_holds_nested_fields_flattened_in_columns_named_like_their_paths(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "deviceId,ts,eventType,payload.location.city,payload.location.loc\n"
        f"door-17,{TS},accessRejected,,\n"
        f'door-17,{TS + 1000},,Zurich,"47.37,8.52"\n'
    )
    assert decoded_rows(FileSource(path)) == EXPECTED


def test_a_csv_file_without_a_column_for_a_nested_field_is_refused_when_prepared(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"deviceId,ts,eventType,city\ndoor-17,{TS},accessRejected,Zurich\n")
    with pytest.raises(ConfigError) as error:
        FileSource(path).prepare(FORMAT)
    message = str(error.value)
    assert "'payload.location.loc' is a nested path, and a CSV file has no nesting" in message
    assert "(the header has: deviceId, ts, eventType, city)" in message


def test_the_simulator_refuses_fields_it_cannot_write() -> None:
    with pytest.raises(ConfigError, match=r"cannot fill the field 'payload\.location\.loc'"):
        list(SimulatorSource(count=5).read(FORMAT, {}, clock))
