"""Records that are not flat readings: fields read by dotted path, and lat/lon text.

Nested NDJSON goes to Polars' reader (the scanner declines it), so most cases run once;
duplicate keys run with and without the scanner's kernels, since each finds repeats its
own way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from sensorstream.errors import ConfigError
from sensorstream.readings import (
    GEO_TYPE,
    Decoded,
    Limits,
    ReadingFormat,
    decode_frame,
    decode_json_lines,
    json_checks,
    json_lines,
    scanner,
)
from sensorstream.readings.scanner import scan_lines, supports

NOW = datetime(2024, 5, 12, 3, tzinfo=UTC)
TS = 1715480000000
# The access events of the reference designs: no numeric measurement at all.
DOORS = ReadingFormat(
    measurements={"eventType": "string", "coordinates": "latlon"},
    device_field="deviceId",
    tags=("region", "city"),
    paths={
        "coordinates": "payload.location.loc",
        "region": "payload.location.region",
        "city": "payload.location.city",
    },
)
EVENT = {"deviceId": "door-17", "ts": TS + 123, "eventType": "accessRejected"}
LOCATED = {
    "deviceId": "door-17",
    "ts": TS,
    "payload": {"location": {"region": "Wiedikon", "city": "Zurich", "loc": "47.37,8.52"}},
}


def decode(*lines: str | dict[str, object], fmt: ReadingFormat = DOORS) -> Decoded:
    text = "".join(f"{line if isinstance(line, str) else json.dumps(line)}\n" for line in lines)
    return decode_json_lines(text.encode(), fmt, arrived_at=NOW, origin="in.ndjson")


def codes(decoded: Decoded) -> list[str]:
    return [str(code) for code in decoded.dead_letters["reason_code"]]


def with_payload(payload: object, device: str = "door-18") -> dict[str, object]:
    return {"deviceId": device, "ts": TS, "eventType": "accessGranted", "payload": payload}


# -- nested fields ------------------------------------------------------------------------------


def test_the_reference_records_decode_into_the_declared_columns() -> None:
    decoded = decode(EVENT, LOCATED)
    assert codes(decoded) == []
    assert decoded.readings.schema == DOORS.canonical_schema()
    assert decoded.readings.drop("ts").to_dicts() == [
        {
            "device_id": "door-17",
            "eventType": "accessRejected",
            "coordinates": None,
            "region": None,
            "city": None,
        },
        {
            "device_id": "door-17",
            "eventType": None,
            "coordinates": {"lat": 47.37, "lon": 8.52},
            "region": "Wiedikon",
            "city": "Zurich",
        },
    ]


@pytest.mark.parametrize(
    "payload", [None, {}, {"location": None}, {"location": {}}, {"other": [1, 2]}]
)
def test_a_missing_or_null_object_on_the_way_gives_nulls(payload: object) -> None:
    decoded = decode(with_payload(payload))
    assert codes(decoded) == []
    assert decoded.readings.select("coordinates", "region", "city").row(0) == (None, None, None)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            "oops",
            "'payload' must be an object holding the field 'payload.location.loc', got string",
        ),
        (5, "'payload' must be an object holding the field 'payload.location.loc', got number 5"),
        ([1], "'payload' must be an object holding the field 'payload.location.loc', got array"),
        ({"location": "x"}, "'payload.location' must be an object holding the field"),
    ],
)
def test_a_value_on_the_way_that_is_no_object_is_a_dead_letter_and_the_rest_decodes(
    payload: object, message: str
) -> None:
    decoded = decode(EVENT, with_payload(payload), LOCATED, EVENT)
    assert codes(decoded) == ["wrong_type"]
    assert message in decoded.dead_letters["reason"][0]
    assert decoded.dead_letters["origin"][0] == "line 2 of in.ndjson"
    assert decoded.readings["region"].to_list() == [None, "Wiedikon", None]


def test_device_time_and_message_id_fields_may_be_nested() -> None:
    fmt = ReadingFormat(
        measurements={"temperature": "float"},
        device_field="meta.device.id",
        time_field="meta.time",
        message_id_field="meta.id",
        paths={"temperature": "data.t"},
    )
    line = {"meta": {"device": {"id": "d-1"}, "time": "2024-05-12T02:00:00Z", "id": "m-1"}}
    decoded = decode({**line, "data": {"t": 21.5}}, {"meta": {"time": TS}}, fmt=fmt)
    assert decoded.readings.drop("ts").to_dicts() == [
        {"device_id": "d-1", "temperature": 21.5, "message_id": "m-1"}
    ]
    assert codes(decoded) == ["missing_device_id"]
    assert "field 'meta.device.id'" in decoded.dead_letters["reason"][0]


def test_a_nested_field_of_the_wrong_type_is_a_dead_letter_naming_the_measurement() -> None:
    fmt = ReadingFormat(measurements={"temperature": "float"}, paths={"temperature": "data.t"})
    good = {"device_id": "a", "ts": TS, "data": {"t": 1.5}}
    decoded = decode(good, {"device_id": "b", "ts": TS, "data": {"t": "warm"}}, good, fmt=fmt)
    assert codes(decoded) == ["wrong_type"]
    assert (
        "measurement 'temperature' must be a number, got string 'warm'"
        in (decoded.dead_letters["reason"][0])
    )
    assert decoded.readings.height == 2


def test_a_measurement_or_tag_may_be_read_from_a_top_level_field_of_another_name() -> None:
    fmt = ReadingFormat(
        measurements={"temperature": "float"}, tags=("site",), paths={"temperature": "t"}
    )
    decoded = decode({"device_id": "a", "ts": TS, "t": 20.5, "site": "x"}, fmt=fmt)
    assert decoded.readings.select("temperature", "site").row(0) == (20.5, "x")


def test_max_fields_counts_the_keys_of_nested_objects() -> None:
    fmt = ReadingFormat(
        measurements={"eventType": "string"},
        tags=("region",),
        paths={"region": "payload.region"},
        limits=Limits(max_fields=6),
    )
    small = {"device_id": "a", "ts": TS, "eventType": "open", "payload": {"region": "x"}}
    big = {"device_id": "a", "ts": TS, "payload": {f"k{i}": i for i in range(8)}}
    decoded = decode(small, big, small, fmt=fmt)
    assert codes(decoded) == ["too_many_fields"]
    assert decoded.readings.height == 2


@pytest.fixture(params=["kernels", "counts"])
def duplicate_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Find repeated keys with the scanner's kernels, or (before they load) by counting keys."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "kernels":
            scanner.load_kernels()
        else:
            patch.setattr(json_checks, "repeated_key_lines", lambda chunk, names: None)
        yield


@pytest.mark.usefixtures("duplicate_check")
@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('"payload": {"location": {"region": "a", "region": "b"}}', "region"),
        ('"payload": {"location": {"city": "a"}, "location": {"city": "b"}}', "location"),
        ('"payload": {"location": {}}, "payload": {"location": {"city": "b"}}', "payload"),
    ],
)
def test_a_repeated_key_on_a_nested_path_is_a_duplicate_key(line: str, field: str) -> None:
    repeated = f'{{"deviceId": "door-18", "ts": {TS}, {line}}}'
    decoded = decode(LOCATED, repeated, EVENT)
    assert codes(decoded) == ["duplicate_key"]
    assert f"field {field!r} appears twice" in decoded.dead_letters["reason"][0]
    assert decoded.readings.height == 2


@pytest.mark.usefixtures("duplicate_check")
def test_a_nested_key_named_like_a_top_level_one_is_no_repeat() -> None:
    fmt = ReadingFormat(measurements={"t": "float"}, paths={"t": "data.t"})
    decoded = decode({"device_id": "a", "ts": TS, "data": {"t": 1.0, "ts": 5}}, fmt=fmt)
    assert (codes(decoded), decoded.readings.height) == ([], 1)


def test_the_scanner_declines_a_nested_format_and_still_takes_flat_ones() -> None:
    assert not supports(DOORS)
    chunk = f"{json.dumps(LOCATED)}\n".encode()
    assert scan_lines(chunk, DOORS, wait=True) is None
    flat = ReadingFormat(measurements={"temperature": "float", "where": "latlon"}, tags=("site",))
    renamed = ReadingFormat(measurements={"temperature": "float"}, paths={"temperature": "t"})
    assert supports(flat)
    assert supports(renamed)
    scanned = scan_lines(b'{"device_id":"a","ts":1,"t":1.5}\n', renamed, wait=True)
    assert scanned is not None
    assert scanned.frame["t"].dtype == pl.Float64


# -- lat/lon text ---------------------------------------------------------------------------------

LATLON = ReadingFormat(measurements={"where": "latlon"})


def at(where: object) -> dict[str, object]:
    return {"device_id": "a", "ts": TS, "where": where}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("47.37,8.52", (47.37, 8.52)),
        ("47.37, 8.52", (47.37, 8.52)),
        (" -33.9 ,\t151.2 ", (-33.9, 151.2)),
        ("90,-180", (90.0, -180.0)),
        ("1e1,.5", (10.0, 0.5)),
    ],
)
def test_latlon_text_becomes_a_geo_value(text: str, expected: tuple[float, float]) -> None:
    decoded = decode(at(text), fmt=LATLON)
    assert codes(decoded) == []
    assert decoded.readings.schema["where"] == GEO_TYPE
    assert decoded.readings["where"][0] == {"lat": expected[0], "lon": expected[1]}


@pytest.mark.parametrize("text", ["north", "47.37", "47.37;8.52", "1,2,3", "nan,1", "a,b", ""])
def test_text_that_is_not_two_numbers_is_an_invalid_geo_dead_letter(text: str) -> None:
    decoded = decode(at("1,2"), at(text), fmt=LATLON)
    assert codes(decoded) == ["invalid_geo"]
    assert 'must be the text "lat,lon"' in decoded.dead_letters["reason"][0]
    assert decoded.dead_letters["origin"][0] == "line 2 of in.ndjson"
    assert decoded.readings.height == 1


def test_a_latlon_that_is_not_text_is_read_as_text_and_rejected_so() -> None:
    decoded = decode(at(47.37), at([47.37, 8.52]), at({"lat": 1, "lon": 2}), fmt=LATLON)
    assert codes(decoded) == ["invalid_geo"] * 3


@pytest.mark.parametrize("text", ["90.5,8", "-91,0", "0,180.01", "0, -200"])
def test_a_latlon_off_the_globe_is_out_of_range_as_a_geo_value_is(text: str) -> None:
    decoded = decode(at(text), fmt=LATLON)
    assert codes(decoded) == ["out_of_range"]


def test_a_null_or_missing_latlon_is_a_missing_measurement() -> None:
    both = ReadingFormat(measurements={"where": "latlon", "t": "float"})
    decoded = decode(at(None), {"device_id": "a", "ts": TS, "t": 1.0}, fmt=both)
    assert codes(decoded) == ["no_measurements"]
    assert decoded.readings["where"].to_list() == [None]


def test_latlon_decodes_the_same_through_the_scanner() -> None:
    lines = [at("47.37, 8.52"), at("north"), at("91,1"), at(None)] * 2000
    chunk = "".join(f"{json.dumps(line)}\n" for line in lines).encode()
    with pytest.MonkeyPatch.context() as patch:
        scanner.load_kernels()
        patch.setattr(scanner, "MIN_CHUNK_BYTES", 0)
        assert scan_lines(chunk, LATLON) is not None
        fast = decode_json_lines(chunk, LATLON, arrived_at=NOW)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_lines, "scan_lines", lambda chunk, fmt: None)
        slow = decode_json_lines(chunk, LATLON, arrived_at=NOW)
    assert fast.readings.equals(slow.readings)
    assert fast.dead_letters.equals(slow.dead_letters)
    assert codes(fast).count("invalid_geo") == 2000


# -- tables ---------------------------------------------------------------------------------------


def test_parquet_struct_columns_are_read_by_path() -> None:
    frame = pl.DataFrame(
        {
            "deviceId": ["door-17", "door-18", "door-19"],
            "ts": [TS, TS, TS],
            "eventType": ["accessRejected", None, "accessGranted"],
            "payload": [
                {"location": {"region": "Wiedikon", "city": "Zurich", "loc": "47.37,8.52"}},
                None,
                {"location": {"region": None, "city": "Bern", "loc": "north"}},
            ],
        }
    )
    decoded = decode_frame(frame, DOORS, arrived_at=NOW, origin="in.parquet")
    assert decoded.readings.select("device_id", "coordinates", "city").rows() == [
        ("door-17", {"lat": 47.37, "lon": 8.52}, "Zurich")
    ]
    assert codes(decoded) == ["no_measurements", "invalid_geo"]
    assert decoded.dead_letters["origin"].to_list() == [
        "row 2 of in.parquet",
        "row 3 of in.parquet",
    ]


def test_a_struct_without_a_field_on_the_way_gives_nulls() -> None:
    frame = pl.DataFrame(
        {"deviceId": ["a"], "ts": [TS], "eventType": ["x"], "payload": [{"other": 1}]}
    )
    decoded = decode_frame(frame, DOORS, arrived_at=NOW, origin="in.parquet")
    assert decoded.readings.select("coordinates", "region").row(0) == (None, None)


def test_a_table_holds_a_nested_field_flattened_in_a_column_named_like_its_path() -> None:
    frame = pl.DataFrame(
        {
            "deviceId": ["door-17"],
            "ts": [str(TS)],
            "payload.location.loc": ["47.37, 8.52"],
            "payload.location.city": ["Zurich"],
        }
    )
    decoded = decode_frame(frame, DOORS, arrived_at=NOW, origin="in.csv")
    assert decoded.readings.select("coordinates", "region", "city").row(0) == (
        {"lat": 47.37, "lon": 8.52},
        None,
        "Zurich",
    )


def test_a_nested_field_inside_a_column_that_is_no_struct_is_a_config_error() -> None:
    frame = pl.DataFrame({"deviceId": ["a"], "ts": [str(TS)], "payload": ['{"location": {}}']})
    with pytest.raises(ConfigError, match=r"in\.csv: the readings field 'payload\.location\.loc'"):
        decode_frame(frame, DOORS, arrived_at=NOW, origin="in.csv")


# -- declaring fields -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tags": ("a.b",)}, "the name 'a.b' holds a dot"),
        ({"paths": {"t": "p..t"}}, "write keys separated by single dots"),
        ({"device_field": ""}, "write keys separated by single dots"),
        ({"paths": {"nope": "p.t"}}, "neither measurements nor tags"),
        ({"tags": ("r",), "paths": {"t": "p", "r": "p.r"}}, "'p.r' lies inside it"),
        ({"paths": {"t": "p.t"}, "time_field": "p"}, "'p.t' lies inside it"),
        ({"tags": ("r",), "paths": {"t": "p.x", "r": "p.x"}}, "are both read from 'p.x'"),
    ],
)
def test_fields_that_cannot_be_read_are_config_errors(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ReadingFormat(measurements={"t": "float"}, **options)


def test_two_columns_may_read_one_field_of_one_type() -> None:
    fmt = ReadingFormat(
        measurements={"t": "float"},
        tags=("device",),
        paths={"device": "meta.id"},
        device_field="meta.id",
    )
    decoded = decode({"meta": {"id": "d-1"}, "ts": TS, "t": 1.0}, fmt=fmt)
    assert decoded.readings.select("device_id", "device").row(0) == ("d-1", "d-1")
