"""Times without a zone are local time in ``readings.time_zone``; a time with a zone keeps it.

Every decoder reads them the same way: NDJSON through the scanner or Polars' reader, and
tables (CSV text, Parquet timestamps with or without a zone).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.errors import ConfigError
from sensorstream.readings import Decoded, ReadingFormat, decode_frame, decode_json_lines, scanner
from sensorstream.readings import json_lines as json_lines_module

ARRIVED = datetime(2025, 1, 1, tzinfo=UTC)
IN_UTC = ReadingFormat(measurements={"temperature": "float"})
IN_ZURICH = ReadingFormat(measurements={"temperature": "float"}, time_zone="Europe/Zurich")


class Decode(Protocol):
    def __call__(self, times: list[object], fmt: ReadingFormat) -> Decoded: ...


def lines(times: list[object]) -> bytes:
    return b"".join(
        json.dumps({"device_id": "a", "ts": ts, "temperature": 1.0}).encode() + b"\n"
        for ts in times
    )


@pytest.fixture(params=["scanner", "polars"])
def decode(request: pytest.FixtureRequest) -> Iterator[Decode]:
    """Decode NDJSON readings with these times through one path: the scanner or Polars."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "scanner":
            scanner.load_kernels()
            patch.setattr(scanner, "MIN_CHUNK_BYTES", 0)
        else:
            patch.setattr(json_lines_module, "scan_lines", lambda chunk, fmt: None)

        def run(times: list[object], fmt: ReadingFormat) -> Decoded:
            return decode_json_lines(lines(times), fmt, arrived_at=ARRIVED, origin="in.ndjson")

        yield run


def times_of(decoded: Decoded) -> list[datetime]:
    assert decoded.dead_letters.height == 0, decoded.dead_letters["reason"].to_list()
    return list(decoded.readings["ts"])


def test_a_zone_less_time_is_utc_by_default(decode: Decode) -> None:
    decoded = decode(["2024-05-12 02:11:37", "2024-05-12T02:11:37.250"], IN_UTC)
    assert times_of(decoded) == [
        datetime(2024, 5, 12, 2, 11, 37, tzinfo=UTC),
        datetime(2024, 5, 12, 2, 11, 37, 250000, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Summer: Zurich is 2 h ahead of UTC (CEST).
        ("2024-05-12 02:11:37", datetime(2024, 5, 12, 0, 11, 37, tzinfo=UTC)),
        ("2024-07-01T12:00:00.5", datetime(2024, 7, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        # Winter: 1 h ahead (CET).
        ("2024-01-15 12:00:00", datetime(2024, 1, 15, 11, tzinfo=UTC)),
        ("2024-12-31T23:30:00", datetime(2024, 12, 31, 22, 30, tzinfo=UTC)),
    ],
)
def test_a_zone_less_time_is_local_time_in_the_declared_zone(
    decode: Decode, text: str, expected: datetime
) -> None:
    assert times_of(decode([text], IN_ZURICH)) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-07-01T12:00:00Z", datetime(2024, 7, 1, 12, tzinfo=UTC)),
        ("2024-07-01 12:00:00+00:00", datetime(2024, 7, 1, 12, tzinfo=UTC)),
        ("2024-07-01T12:00:00-05:00", datetime(2024, 7, 1, 17, tzinfo=UTC)),
        ("2024-03-31T02:30:00+01:00", datetime(2024, 3, 31, 1, 30, tzinfo=UTC)),  # in the gap
    ],
)
def test_an_explicit_zone_wins_over_the_declared_one(
    decode: Decode, text: str, expected: datetime
) -> None:
    assert times_of(decode([text], IN_ZURICH)) == [expected]


def test_epoch_numbers_are_utc_whatever_the_declared_zone(decode: Decode) -> None:
    decoded = decode([1_720_000_000_000, "1720000000"], IN_ZURICH)
    assert times_of(decoded) == [datetime(2024, 7, 3, 9, 46, 40, tzinfo=UTC)] * 2


def test_a_local_time_the_zone_skips_is_a_dead_letter_with_its_reason(decode: Decode) -> None:
    # Zurich's clocks jumped from 02:00 to 03:00 on 2024-03-31.
    decoded = decode(
        ["2024-03-31 01:59:59", "2024-03-31 02:30:00", "2024-03-31 03:00:00"], IN_ZURICH
    )
    assert list(decoded.readings["ts"]) == [
        datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC),
        datetime(2024, 3, 31, 1, tzinfo=UTC),
    ]
    [dead] = decoded.dead_letters.to_dicts()
    assert dead["reason_code"] == "nonexistent_local_time"
    assert dead["origin"] == "line 2 of in.ndjson"
    assert dead["reason"] == (
        "timestamp 2024-03-31 02:30:00 has no zone and does not exist in Europe/Zurich "
        "(readings.time_zone): the clocks skip it when daylight saving time begins; send "
        "times with their offset, or in UTC"
    )


def test_a_local_time_the_zone_repeats_is_the_earlier_instant(decode: Decode) -> None:
    # Zurich's clocks fell back from 03:00 to 02:00 on 2024-10-27: 02:30 happened twice.
    decoded = decode(
        ["2024-10-27 01:59:59", "2024-10-27 02:30:00", "2024-10-27 03:00:00"], IN_ZURICH
    )
    assert times_of(decoded) == [
        datetime(2024, 10, 26, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),  # still summer time (+02:00)
        datetime(2024, 10, 27, 2, tzinfo=UTC),
    ]


def test_text_that_is_no_time_is_still_a_bad_timestamp(decode: Decode) -> None:
    decoded = decode(["2024-07-01", "12:00:00", "2024-07-01 25:00:00"], IN_ZURICH)
    assert decoded.dead_letters["reason_code"].to_list() == ["bad_timestamp"] * 3


def test_csv_text_times_are_read_in_the_declared_zone() -> None:
    # A CSV record's fields arrive as text.
    frame = pl.DataFrame(
        {
            "device_id": ["a", "a", "a", "a"],
            "ts": ["2024-07-01 12:00:00", "2024-07-01T12:00:00Z", "2024-03-31 02:30:00", "1"],
            "temperature": ["1", "2", "3", "4"],
        }
    )
    decoded = decode_frame(frame, IN_ZURICH, arrived_at=ARRIVED, origin="in.csv")
    assert list(decoded.readings["ts"]) == [
        datetime(2024, 7, 1, 10, tzinfo=UTC),
        datetime(2024, 7, 1, 12, tzinfo=UTC),
    ]
    assert decoded.dead_letters.select("reason_code", "origin").rows() == [
        ("nonexistent_local_time", "row 3 of in.csv"),
        ("time_too_early", "row 4 of in.csv"),
    ]


def test_a_naive_timestamp_column_is_read_in_the_declared_zone() -> None:
    # A Parquet timestamp without a zone, as the text without one is read.
    naive = [
        datetime(2024, 7, 1, 12),  # noqa: DTZ001 - a timestamp without a zone, on purpose
        datetime(2024, 1, 15, 12),  # noqa: DTZ001
        datetime(2024, 3, 31, 2, 30),  # noqa: DTZ001 - in Zurich's spring-forward gap
    ]
    frame = pl.DataFrame(
        {"device_id": ["a"] * 3, "ts": naive, "temperature": [1.0] * 3},
        schema_overrides={"ts": pl.Datetime("ms")},
    )
    decoded = decode_frame(frame, IN_ZURICH, arrived_at=ARRIVED, origin="in.parquet")
    assert list(decoded.readings["ts"]) == [
        datetime(2024, 7, 1, 10, tzinfo=UTC),
        datetime(2024, 1, 15, 11, tzinfo=UTC),
    ]
    assert decoded.dead_letters["reason_code"].to_list() == ["nonexistent_local_time"]
    in_utc = decode_frame(frame, IN_UTC, arrived_at=ARRIVED, origin="in.parquet")
    assert list(in_utc.readings["ts"]) == [t.replace(tzinfo=UTC) for t in naive]


def test_a_timestamp_column_with_a_zone_keeps_it() -> None:
    frame = pl.DataFrame(
        {"device_id": ["a"], "ts": [datetime(2024, 7, 1, 12, tzinfo=UTC)], "temperature": [1.0]},
        schema_overrides={"ts": pl.Datetime("us", "America/New_York")},
    )
    decoded = decode_frame(frame, IN_ZURICH, arrived_at=ARRIVED, origin="in.parquet")
    assert list(decoded.readings["ts"]) == [datetime(2024, 7, 1, 12, tzinfo=UTC)]


def test_the_scanner_and_polars_agree_on_times_with_and_without_a_zone() -> None:
    times: list[object] = [
        1_720_000_000_000,
        "2024-05-12 02:11:37",
        "2024-05-12T02:11:37Z",
        "2024-03-31 02:30:00",
        "2024-10-27 02:30:00",
        "soon",
    ]
    chunk = lines(times * 50)
    scanner.load_kernels()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanner, "MIN_CHUNK_BYTES", 0)
        fast = decode_json_lines(chunk, IN_ZURICH, arrived_at=ARRIVED, origin="in.ndjson")
        patch.setattr(json_lines_module, "scan_lines", lambda chunk, fmt: None)
        slow = decode_json_lines(chunk, IN_ZURICH, arrived_at=ARRIVED, origin="in.ndjson")
    assert_frame_equal(fast.readings, slow.readings, check_exact=True)
    assert_frame_equal(fast.dead_letters, slow.dead_letters)
    assert fast.readings.height == 4 * 50


def test_the_scanner_leaves_zone_less_text_to_polars() -> None:
    # It never reads time text itself, so it cannot read a zone-less one as UTC.
    chunk = lines(["2024-05-12 02:11:37"])
    assert scanner.scan_lines(chunk, IN_ZURICH, wait=True) is None


@pytest.mark.parametrize("name", ["Europe/Zurch", "europe/zurich", "localtime", "+02:00", ""])
def test_an_unknown_time_zone_is_a_config_error_with_an_example(name: str) -> None:
    with pytest.raises(ConfigError, match=r"readings\.time_zone: unknown time zone") as error:
        ReadingFormat(measurements={"t": "float"}, time_zone=name)
    assert "Europe/Zurich" in str(error.value)


def test_the_time_zone_is_part_of_a_formats_identity() -> None:
    assert IN_ZURICH != IN_UTC
    assert ReadingFormat(measurements={"temperature": "float"}, time_zone="UTC") == IN_UTC
