"""Limits, duplicate keys, blank lines and reason codes of NDJSON payloads, on both decode paths.

Every case runs twice: through the compiled scanner (forced even for a small chunk) and
through Polars' reader with the scanner switched off, since a chunk may take either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from sensorstream.readings import (
    REASONS,
    Decoded,
    Limits,
    ReadingFormat,
    decode_json_lines,
    scanner,
)
from sensorstream.readings import json_lines as json_lines_module

NOW = datetime(2024, 1, 1, tzinfo=UTC)
TS = 1704067200
FORMAT = ReadingFormat(measurements={"temperature": "float", "humidity": "float"})
Decode = Callable[..., Decoded]


def good(device: str = "a", value: float = 1.0) -> str:
    return json.dumps({"device_id": device, "ts": TS, "temperature": value})


@pytest.fixture(params=["scanner", "polars"])
def decode(request: pytest.FixtureRequest) -> Iterator[Decode]:
    """Decode a chunk through one path: the scanner (forced) or Polars alone."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "scanner":
            scanner.load_kernels()
            patch.setattr(scanner, "MIN_CHUNK_BYTES", 0)
        else:
            patch.setattr(json_lines_module, "scan_lines", lambda chunk, fmt: None)

        def run(text: str | bytes, fmt: ReadingFormat = FORMAT) -> Decoded:
            chunk = text.encode() if isinstance(text, str) else text
            return decode_json_lines(chunk, fmt, arrived_at=NOW, origin="in.ndjson")

        yield run


def codes(decoded: Decoded) -> list[str]:
    return [str(code) for code in decoded.dead_letters["reason_code"]]


def test_blank_lines_are_counted_apart_from_payloads(decode: Decode) -> None:
    decoded = decode(f"{good()}\n\n   \n\t\r\n{good('b')}\n\n")
    assert (decoded.readings.height, decoded.payloads, decoded.blank) == (2, 2, 4)


def test_a_form_feed_line_is_a_payload_not_a_blank_one(decode: Decode) -> None:
    # JSON white space is space, tab, CR and LF only; Polars and the scanner agree.
    decoded = decode(f"{good()}\n\x0c\n")
    assert (decoded.payloads, decoded.blank, codes(decoded)) == (2, 0, ["invalid_json"])


def test_a_repeated_field_is_a_dead_letter_naming_it(decode: Decode) -> None:
    line = f'{{"device_id": "a", "ts": {TS}, "temperature": 20, "temperature": 30}}'
    decoded = decode(f"{good()}\n{line}\n{good('b')}\n")
    assert decoded.readings["device_id"].to_list() == ["a", "b"]
    assert codes(decoded) == ["duplicate_key"]
    assert "'temperature' appears twice" in decoded.dead_letters["reason"][0]
    assert decoded.dead_letters["origin"][0] == "line 2 of in.ndjson"


def test_a_repeated_device_id_or_time_is_a_duplicate_key_too(decode: Decode) -> None:
    line = f'{{"device_id": "a", "device_id": "b", "ts": {TS}, "temperature": 1}}'
    assert codes(decode(line + "\n")) == ["duplicate_key"]


def test_explicit_nulls_and_key_names_inside_values_are_not_repeats(decode: Decode) -> None:
    lines = [
        f'{{"device_id": "a", "ts": {TS}, "temperature": 1, "humidity": null}}',
        f'{{"device_id": "b", "ts": {TS}, "temperature": 1, "note": "\\"temperature\\" ok"}}',
        f'{{"device_id": "c", "ts": {TS}, "temperature": 2, "meta": {{"ts": 5}}}}',
    ]
    decoded = decode("\n".join(lines) + "\n")
    assert decoded.dead_letters.height == 0, decoded.dead_letters["reason"].to_list()
    assert decoded.readings["device_id"].to_list() == ["a", "b", "c"]


def test_a_device_id_past_the_limit_is_a_dead_letter_not_a_results_key(decode: Decode) -> None:
    huge = "d" * 100_000
    decoded = decode(f"{good(huge)}\n{good()}\n")
    assert decoded.readings["device_id"].to_list() == ["a"]
    assert codes(decoded) == ["id_too_long"]
    assert "100000 bytes, more than 256" in decoded.dead_letters["reason"][0]


def test_tags_past_the_id_limit_are_dead_letters_too(decode: Decode) -> None:
    fmt = ReadingFormat(measurements={"temperature": "float"}, tags=("room",))
    line = json.dumps({"device_id": "a", "ts": TS, "temperature": 1, "room": "r" * 300})
    assert codes(decode(line + "\n", fmt)) == ["id_too_long"]


def test_a_payload_past_the_limit_keeps_its_first_bytes_length_and_hash(decode: Decode) -> None:
    fmt = ReadingFormat(
        measurements={"temperature": "float"},
        limits=Limits(max_payload_bytes=1000, max_raw_bytes=100),
    )
    long_line = json.dumps({"device_id": "a", "ts": TS, "temperature": 1, "pad": "x" * 2000})
    decoded = decode(f"{good()}\n{long_line}\n{good('b')}\n", fmt)
    assert decoded.readings["device_id"].to_list() == ["a", "b"]
    assert (decoded.payloads, decoded.blank) == (3, 0)
    [dead] = decoded.dead_letters.iter_rows(named=True)
    assert dead["reason_code"] == "payload_too_large"
    assert dead["origin"] == "line 2 of in.ndjson"
    assert dead["raw"] == long_line.encode()[:100]
    assert dead["raw_length"] == len(long_line)
    assert dead["raw_sha256"] == hashlib.sha256(long_line.encode()).hexdigest()


def test_an_object_with_too_many_fields_is_a_dead_letter(decode: Decode) -> None:
    fmt = ReadingFormat(measurements={"temperature": "float"}, limits=Limits(max_fields=10))
    wide = {"device_id": "a", "ts": TS, "temperature": 1, **{f"f{i}": i for i in range(20)}}
    nested = {"device_id": "b", "ts": TS, "temperature": 1, "x": {f"g{i}": i for i in range(20)}}
    text = "\n".join([json.dumps(wide), json.dumps(nested), good("c")]) + "\n"
    decoded = decode(text, fmt)
    assert decoded.readings["device_id"].to_list() == ["c"]
    assert codes(decoded) == ["too_many_fields", "too_many_fields"]
    assert "23 fields, more than 10" in decoded.dead_letters["reason"][0]


def test_invalid_json_says_which_column_of_which_line(decode: Decode) -> None:
    decoded = decode(f"{good()}\n{good()}\n" + '{"device_id": "a", "ts": 1,}\n')
    assert codes(decoded) == ["invalid_json"]
    assert decoded.dead_letters["reason"][0].endswith("at column 27 of line 3")


def test_a_binary_payload_is_kept_byte_for_byte(decode: Decode) -> None:
    binary = b'{"device_id": "\xff\xfe", "ts": 1, "t\x00": 1}'
    decoded = decode(good().encode() + b"\n" + binary + b"\n")
    [dead] = decoded.dead_letters.iter_rows(named=True)
    assert dead["raw"] == binary
    assert dead["reason_code"] == "invalid_utf8"


def test_a_message_quotes_at_most_80_characters_of_a_value(decode: Decode) -> None:
    line = json.dumps({"device_id": "a", "ts": "x" * 10_000, "temperature": 1})
    [reason] = decode(line + "\n").dead_letters["reason"].to_list()
    assert len(reason) < 200
    assert "…" in reason


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("{bad json", "invalid_json"),
        ("[1,2]", "not_an_object"),
        ('{"ts":1704067200,"temperature":1}', "missing_device_id"),
        ('{"device_id":"","ts":1704067200,"temperature":1}', "missing_device_id"),
        ('{"device_id":"a","temperature":1}', "missing_timestamp"),
        ('{"device_id":"a","ts":1704067200,"temperature":"hot"}', "wrong_type"),
        ('{"device_id":"a","ts":1704067200,"temperature":NaN}', "invalid_json"),
        ('{"device_id":"a","ts":1904067200,"temperature":1}', "time_in_future"),
        ('{"device_id":"a","ts":5,"temperature":1}', "time_too_early"),
        ('{"device_id":"a","ts":"yesterday","temperature":1}', "bad_timestamp"),
        ('{"device_id":"a","ts":1704067200}', "no_measurements"),
        ('{"device_id":"a","ts":1704067200,"temperature":1e400}', "invalid_json"),
    ],
)
def test_each_kind_of_problem_has_its_own_stable_code(decode: Decode, line: str, code: str) -> None:
    decoded = decode(line + "\n")
    assert codes(decoded) == [code]
    assert code in REASONS


def test_not_finite_and_out_of_range_values_have_codes_of_their_own() -> None:
    fmt = ReadingFormat(measurements={"loc": "geo", "t": "float"})
    decoded = decode_json_lines(
        b'{"device_id":"a","ts":1704067200,"loc":{"lat":91,"lon":0}}\n',
        fmt,
        arrived_at=NOW,
    )
    assert codes(decoded) == ["out_of_range"]
