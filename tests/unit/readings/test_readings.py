from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat, decode_frame, decode_json_lines

NOW = datetime(2024, 1, 1, tzinfo=UTC)
FORMAT = ReadingFormat(
    measurements={"temperature": "float", "humidity": "float", "loc": "geo", "ok": "bool"},
    tags=("room",),
)


def decode(text: str, fmt: ReadingFormat = FORMAT) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    decoded = decode_json_lines(text.encode(), fmt, arrived_at=NOW, origin="in.ndjson")
    return decoded.readings, decoded.dead_letters, decoded.payloads


def reason_of(text: str) -> str:
    readings, dead, payloads = decode(text)
    assert readings.height == 0
    assert payloads == 1
    return str(dead["reason"][0])


def test_valid_reading_is_decoded_to_canonical_columns() -> None:
    readings, dead, payloads = decode(
        '{"device_id":"a","ts":1704067000000,"temperature":21.5,"room":"r1"}\n'
    )
    assert dead.height == 0
    assert payloads == 1
    assert readings.columns == ["device_id", "ts", "temperature", "humidity", "loc", "ok", "room"]
    assert readings["ts"][0] == datetime(2023, 12, 31, 23, 56, 40, tzinfo=UTC)
    assert readings["temperature"][0] == 21.5


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("1704067200", datetime(2024, 1, 1, tzinfo=UTC)),
        ("1704067200.5", datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ("1704067200000", datetime(2024, 1, 1, tzinfo=UTC)),
        ("1704067200000000", datetime(2024, 1, 1, tzinfo=UTC)),
        ('"2024-01-01T02:00:00+02:00"', datetime(2024, 1, 1, tzinfo=UTC)),
        ('"2024-01-01T00:00:00Z"', datetime(2024, 1, 1, tzinfo=UTC)),
        ('"2024-01-01 00:00:00.250+00:00"', datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
        # Without a zone: local time in readings.time_zone, UTC by default.
        ('"2024-01-01T00:00:00"', datetime(2024, 1, 1, tzinfo=UTC)),
        ('"2024-01-01 00:00:00.250"', datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamps_in_epoch_units_and_iso_8601_are_understood(ts: str, expected: datetime) -> None:
    readings, dead, _ = decode(f'{{"device_id":"a","ts":{ts},"temperature":1}}\n')
    assert dead.height == 0, dead["reason"].to_list()
    assert readings["ts"][0] == expected


def test_mixed_epoch_units_in_one_chunk_are_each_understood() -> None:
    text = (
        '{"device_id":"a","ts":1704067200,"temperature":1}\n'
        '{"device_id":"a","ts":1704067200000,"temperature":1}\n'
    )
    readings, _, _ = decode(text)
    assert readings["ts"].to_list() == [datetime(2024, 1, 1, tzinfo=UTC)] * 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{bad json", "invalid JSON"),
        ("[1,2]", "expected a JSON object, got array"),
        ('{"ts":1704067200,"temperature":1}', "missing device id"),
        ('{"device_id":"a","temperature":1}', "missing timestamp"),
        ('{"device_id":"a","ts":1704067200,"temperature":"hot"}', "must be a number"),
        ('{"device_id":"a","ts":1704067200,"temperature":NaN}', "invalid JSON"),
        ('{"device_id":"a","ts":1704067200,"temperature":1e999}', "invalid JSON"),
        ('{"device_id":"a","ts":1904067200,"temperature":1}', "in the future"),
        ('{"device_id":"a","ts":5,"temperature":1}', "before 2000-01-01"),
        ('{"device_id":"a","ts":"yesterday","temperature":1}', "neither an epoch number"),
        ('{"device_id":"a","ts":"2024-01-01","temperature":1}', "neither an epoch number"),
        ('{"device_id":"a","ts":1704067200}', "no measurements"),
        ('{"device_id":"a","ts":1704067200,"loc":{"lat":91,"lon":0}}', "outside -90..90"),
        ('{"device_id":"a","ts":1704067200,"ok":"yes"}', "must be true or false"),
        ('{"device_id":"","ts":1704067200,"temperature":1}', "missing device id"),
    ],
)
def test_invalid_readings_become_dead_letters_with_a_reason(line: str, reason: str) -> None:
    assert reason in reason_of(line + "\n")


def test_dead_letters_keep_the_raw_payload_line_number_and_arrival() -> None:
    text = '{"device_id":"a","ts":1704067200,"temperature":1}\n\n{oops\n'
    readings, dead, payloads = decode(text)
    assert readings.height == 1
    assert payloads == 2  # the blank line is not a payload
    assert dead.row(0, named=True) == {
        "reason_code": "invalid_json",
        "reason": dead["reason"][0],
        "origin": "line 3 of in.ndjson",
        "raw": b"{oops",
        "raw_length": 5,
        "raw_sha256": hashlib.sha256(b"{oops").hexdigest(),
        "arrived_at": NOW,
    }


def test_a_poison_line_costs_only_its_own_reading() -> None:
    good = '{"device_id":"a","ts":1704067200,"temperature":1}\n'
    text = good * 5000 + '{"device_id":"a","ts":1704067200,"temperature":"x"}\n' + good * 5000
    readings, dead, payloads = decode(text)
    assert (readings.height, dead.height, payloads) == (10000, 1, 10001)
    assert dead["origin"][0] == "line 5001 of in.ndjson"


def test_custom_field_names_are_mapped_to_canonical_columns() -> None:
    fmt = ReadingFormat(
        measurements={"hr": "int"}, device_field="user", time_field="time", time_unit="s"
    )
    readings, dead, _ = decode('{"user":"u1","time":1704067200,"hr":71}\n', fmt)
    assert dead.height == 0
    assert readings.row(0) == ("u1", datetime(2024, 1, 1, tzinfo=UTC), 71)


def test_max_future_is_configurable() -> None:
    fmt = ReadingFormat(measurements={"t": "float"}, max_future=timedelta(days=3650))
    _, dead, _ = decode('{"device_id":"a","ts":1904067200,"t":1}\n', fmt)
    assert dead.height == 0


def test_reserved_and_unknown_types_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        ReadingFormat(measurements={"ts": "float"})
    with pytest.raises(ConfigError, match="allowed: bool, float"):
        ReadingFormat(measurements={"t": "decimal"})  # type: ignore[dict-item]


def test_tabular_rows_are_validated_with_the_same_rules() -> None:
    frame = pl.DataFrame(
        {
            "device_id": ["a", None, "c"],
            "ts": ["1704067200", "1704067200", "1704067200"],
            "temperature": ["1.5", "2", "warm"],
        }
    )
    fmt = ReadingFormat(measurements={"temperature": "float"})
    decoded = decode_frame(frame, fmt, arrived_at=NOW, origin="in.csv")
    assert decoded.readings["device_id"].to_list() == ["a"]
    assert decoded.payloads == 3
    reasons = sorted(decoded.dead_letters["reason"].to_list())
    assert reasons[0].startswith("measurement 'temperature' must be")
    assert reasons[1].startswith("missing device id")
    assert sorted(decoded.dead_letters["origin"].to_list()) == [
        "row 2 of in.csv",
        "row 3 of in.csv",
    ]
