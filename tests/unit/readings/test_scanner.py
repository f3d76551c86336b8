"""The compiled NDJSON scanner agrees with Polars' reader on every chunk it accepts.

It may decline a chunk (then Polars decodes it as before), but it must never produce a
different frame, and it must not decline the plain flat readings it exists for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sensorstream.readings import Limits, ReadingFormat, decode_json_lines, scanner
from sensorstream.readings import json_lines as json_lines_module
from sensorstream.readings.scanner import scan_lines, supports

FORMAT = ReadingFormat(
    measurements={"temperature": "float", "count": "int", "ok": "bool", "label": "string"},
    tags=("room",),
    message_id_field="id",
)
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def polars_read(chunk: bytes, fmt: ReadingFormat) -> pl.DataFrame | None:
    """What Polars' reader makes of the chunk: epoch integers first, then numbers."""
    for time_type in (pl.Int64(), pl.Float64()):
        try:
            return pl.read_ndjson(chunk, schema=fmt.wire_schema(time_type))
        except pl.exceptions.PolarsError:
            continue
    return None


def assert_agrees_with_polars(chunk: bytes, fmt: ReadingFormat = FORMAT) -> pl.DataFrame | None:
    scanned = scan_lines(chunk, fmt, wait=True)
    if scanned is None:
        return None
    expected = polars_read(chunk, fmt)
    assert expected is not None, f"the scanner accepted what Polars rejects: {chunk!r}"
    assert_frame_equal(scanned.frame, expected, check_exact=True)
    return scanned.frame


def test_plain_flat_readings_are_scanned_exactly_as_polars_reads_them() -> None:
    chunk = (
        b'{"device_id":"dev-1","ts":1700000000000,"temperature":17.27,"count":3,'
        b'"ok":true,"label":"a b","room":"r1","id":"m1"}\n'
        b'{"device_id": "dev-2", "ts": 1700000000001, "temperature": -0.5e-3, "ok": false}\n'
        b"\n"
        b'{"ts":1700000000002,"device_id":"dev-3","temperature":null,"extra":[1]}\r\n'
    )
    assert scan_lines(chunk.replace(b',"extra":[1]', b""), FORMAT, wait=True) is not None
    assert_agrees_with_polars(chunk.replace(b',"extra":[1]', b""))


def test_a_fractional_time_makes_the_time_column_float_as_polars_does() -> None:
    chunk = b'{"device_id":"a","ts":1700000000.5,"temperature":1}\n{"device_id":"b","ts":17}\n'
    scanned = assert_agrees_with_polars(chunk)
    assert scanned is not None
    assert scanned.schema["ts"] == pl.Float64


@pytest.mark.parametrize(
    "line",
    [
        '{"device_id":"a\\"b","ts":1}',  # an escape
        '{"device_id":"é","ts":1}',  # non-ASCII text
        '{"device_id":"a","ts":1,"temperature":{"v":1}}',  # a nested value
        '{"device_id":"a","ts":1,"extra":[1,2]}',  # a nested value in an unknown field
        '{"device_id":"a","ts":1,"ts":2}',  # a repeated key
        '{"device_id":"a","ts":"2024-01-01T00:00:00Z"}',  # an ISO time: Polars' job
        '{"device_id":5,"ts":1}',  # a number where a string belongs
        '{"device_id":"a","ts":1,"temperature":"1.5"}',  # text where a number belongs
        '{"device_id":"a","ts":1,"temperature":true}',  # a boolean where a number belongs
        '{"device_id":"a","ts":1,"count":1.5}',  # a fraction where an integer belongs
        '{"device_id":"a","ts":1,"ok":1}',  # a number where a boolean belongs
        '{"device_id":"a","ts":1,"temperature":NaN}',  # not JSON
        '{"device_id":"a","ts":1,"temperature":01}',  # a leading zero is not JSON
        '{"device_id":"a","ts":1,"temperature":1e400}',  # beyond the exact fast path
        '{"device_id":"a","ts":1,"temperature":0.1234567890123456789}',  # too many digits
        '{"device_id":"a","ts":99999999999999999999}',  # beyond Int64
        '{"device_id":"a","ts":1',  # cut short
        '{"device_id":"a","ts":1} trailing',  # something after the object
        "[1, 2]",  # not an object
    ],
)
def test_anything_outside_plain_flat_objects_is_declined(line: str) -> None:
    assert scan_lines(f'{{"device_id":"ok","ts":1}}\n{line}\n'.encode(), FORMAT, wait=True) is None


def test_a_format_with_a_geo_measurement_is_left_to_polars() -> None:
    geo = ReadingFormat(measurements={"where": "geo"})
    assert not supports(geo)
    assert (
        scan_lines(b'{"device_id":"a","ts":1,"where":{"lat":1,"lon":2}}\n', geo, wait=True) is None
    )


@given(st.floats(allow_nan=False, allow_infinity=False))
@example(0.1)
@example(-0.0)
@example(5e-324)
@example(1.7976931348623157e308)
def test_numbers_convert_exactly_or_are_declined(value: float) -> None:
    for text in (repr(value), f"{value:.6f}", f"{value:e}", f"{value:.17g}"):
        chunk = f'{{"device_id":"a","ts":1,"temperature":{text}}}\n'.encode()
        scanned = assert_agrees_with_polars(chunk)
        if scanned is not None:
            assert scanned["temperature"][0] == float(text)


@given(st.integers(-(2**63), 2**63 - 1))
def test_integers_convert_exactly_or_are_declined(value: int) -> None:
    chunk = f'{{"device_id":"a","ts":{value},"count":{value}}}\n'.encode()
    scanned = assert_agrees_with_polars(chunk)
    if scanned is not None:
        assert scanned["ts"][0] == value
        assert scanned["count"][0] == value


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
# Up to 12 bytes a string sits inside its Arrow view; longer ones go to a data buffer.
_ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
_NUMBERS = st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6)
# Time texts with and without a zone, and Zurich's skipped and repeated local hours.
_TIME_TEXTS = st.sampled_from(
    [
        "2023-12-31 23:59:59",
        "2023-12-31T23:59:59.5",
        "2023-12-31T23:59:59Z",
        "2023-12-31 23:59:59+05:00",
        "2023-03-26 02:30:00",
        "2023-10-29 02:30:00",
    ]
)
# Values of each key's declared type, so that most objects are ones the scanner should take.
_TYPED = {
    "device_id": _ASCII,
    "ts": st.integers(0, 2**53) | st.floats(0, 2e12) | _TIME_TEXTS,
    "temperature": _NUMBERS,
    "count": st.integers(-(2**63), 2**63 - 1),
    "ok": st.booleans(),
    "label": _ASCII,
    "room": _ASCII,
    "id": _ASCII,
    "other": _NUMBERS | _ASCII,
}


@st.composite
def lines(draw: st.DrawFn) -> str:
    """A JSON-ish line: mostly objects of scalars under known and unknown keys."""
    kind = draw(st.sampled_from(["object", "object", "object", "blank", "broken", "array"]))
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t"]))
    if kind == "array":
        return json.dumps(draw(st.lists(_SCALARS, max_size=3)))
    keys = draw(st.lists(st.sampled_from(list(_TYPED)), max_size=6))
    pairs = [
        (key, draw(_TYPED[key] | _SCALARS if draw(st.booleans()) else _TYPED[key])) for key in keys
    ]
    space = draw(st.sampled_from(["", " "]))
    body = ("," + space).join(f"{json.dumps(k)}:{space}{json.dumps(v)}" for k, v in pairs)
    text = "{" + space + body + space + "}"
    if kind == "broken":
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "x", "}", '"', ",}"])) + text[cut:]
    return text


@given(st.lists(lines(), max_size=8), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_random_chunks_are_scanned_as_polars_reads_them_or_declined(
    chunk_lines: list[str], newline: str, final_newline: bool
) -> None:
    text = newline.join(chunk_lines) + (newline if final_newline else "")
    assert_agrees_with_polars(text.encode())


# Limits small enough that random lines cross them: long payloads, many keys, long ids.
TIGHT = ReadingFormat(
    measurements=dict(FORMAT.measurements),
    tags=FORMAT.tags,
    message_id_field=FORMAT.message_id_field,
    limits=Limits(max_payload_bytes=90, max_fields=4, max_id_bytes=8, max_raw_bytes=16),
)


# Zone-less times read in another zone than UTC: the scanner must not read them as UTC.
ZURICH = ReadingFormat(
    measurements=dict(FORMAT.measurements),
    tags=FORMAT.tags,
    message_id_field=FORMAT.message_id_field,
    time_zone="Europe/Zurich",
)


@given(st.lists(lines(), min_size=1, max_size=12), st.sampled_from([FORMAT, TIGHT, ZURICH]))
def test_decoding_is_the_same_with_and_without_the_scanner(
    chunk_lines: list[str], fmt: ReadingFormat
) -> None:
    chunk = ("\n".join(chunk_lines) + "\n").encode()
    scanner.load_kernels()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanner, "MIN_CHUNK_BYTES", 0)  # scan even this small chunk
        fast = decode_json_lines(chunk, fmt, arrived_at=NOW, origin="in.ndjson")
        patch.setattr(json_lines_module, "scan_lines", lambda chunk, fmt: None)
        slow = decode_json_lines(chunk, fmt, arrived_at=NOW, origin="in.ndjson")
    assert (fast.payloads, fast.blank) == (slow.payloads, slow.blank)
    # Every line is a payload or blank, whichever path read it.
    assert fast.payloads + fast.blank == len(chunk_lines)
    assert fast.readings.height + fast.dead_letters.height == fast.payloads
    assert_frame_equal(fast.readings, slow.readings, check_exact=True)
    assert_frame_equal(fast.dead_letters.sort("origin"), slow.dead_letters.sort("origin"))


def test_a_chunk_of_very_short_objects_is_scanned_whole() -> None:
    # Shorter than the room the scanner first makes per byte: it must count and scan again.
    chunk = b"{}\n" * 1000 + b'{"device_id":"a","ts":1}\n'
    scanned = assert_agrees_with_polars(chunk)
    assert scanned is not None
    assert scanned.height == 1001


def test_small_chunks_are_left_to_polars_unless_a_scan_is_asked_for() -> None:
    small = b'{"device_id":"a","ts":1}\n'
    assert len(small) < scanner.MIN_CHUNK_BYTES
    assert scan_lines(small, FORMAT) is None
    assert scan_lines(small, FORMAT, wait=True) is not None


# Plain strings (no quote or backslash, which JSON escapes and the scanner leaves to Polars).
_ANY_LENGTH = st.text(
    st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\'), max_size=40
)


@given(
    st.lists(st.tuples(_ANY_LENGTH, st.none() | _ANY_LENGTH, st.none() | _ANY_LENGTH), max_size=20)
)
def test_strings_of_any_length_are_scanned_as_polars_reads_them(
    rows: list[tuple[str, str | None, str | None]],
) -> None:
    # Short strings live inside their Arrow views, longer ones in a shared data buffer.
    lines = []
    for ts, (device, label, room) in enumerate(rows):
        fields = {"device_id": device, "ts": ts, "label": label}
        if room is not None:
            fields["room"] = room
        lines.append(json.dumps(fields))
    chunk = "".join(f"{line}\n" for line in lines).encode()
    scanned = assert_agrees_with_polars(chunk)
    assert (scanned is not None) == bool(rows)


# JSON objects written by hand, so that keys may repeat and strings may hold escapes.
_KEYS = st.sampled_from(["a", "b", "ts", "x\\u0041", 'q\\"'])
_LEAVES = st.sampled_from(["1", '"a"', '"\\"a\\":"', "null", "[]", '"\\\\"'])


def _json_object(depth: int) -> st.SearchStrategy[str]:
    value = _LEAVES if depth == 0 else _LEAVES | _json_object(depth - 1) | _json_array(depth - 1)
    return st.lists(st.tuples(_KEYS, value), max_size=4).map(
        lambda pairs: "{" + ", ".join(f'"{k}": {v}' for k, v in pairs) + "}"
    )


def _json_array(depth: int) -> st.SearchStrategy[str]:
    value = _LEAVES if depth == 0 else _LEAVES | _json_object(depth - 1)
    return st.lists(value, max_size=3).map(lambda values: "[" + ",".join(values) + "]")


@given(st.lists(_json_object(3), max_size=6))
def test_every_line_repeating_a_key_is_flagged_for_the_exact_check(objects: list[str]) -> None:
    from sensorstream.readings.json_checks import duplicated_field

    scanner._loader().result()
    fmt = ReadingFormat(measurements={"a": "float", "b": "float"})
    chunk = ("\n".join(objects) + "\n").encode()
    for line in objects:
        json.loads(line)  # the kernel is given valid JSON only
    flagged = scanner.repeated_key_lines(chunk, ["device_id", "ts", "a", "b"])
    assert flagged is not None
    repeating = [i for i, line in enumerate(objects) if duplicated_field(line.encode(), fmt)]
    assert set(repeating) <= set(flagged)


def test_decoding_small_chunks_never_starts_loading_numba() -> None:
    # Numba costs most of a second to load: a short run (a live batch, a small file, a
    # duplicate-key check on Polars' path) must not pay for it.
    script = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from sensorstream.readings import ReadingFormat, decode_json_lines\n"
        "fmt = ReadingFormat(measurements={'t': 'float', 'loc': 'geo'})\n"
        'chunk = b\'{"device_id": "a", "ts": 1700000000, "t": 1, "t": 2}\\n\' * 50\n'
        "decode_json_lines(chunk, fmt, arrived_at=datetime(2024, 1, 1, tzinfo=UTC))\n"
        "print('numba' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "False"
