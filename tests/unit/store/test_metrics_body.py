"""POST /compute/metrics reads its body as JSON, forgiving the document's trailing comma."""

from __future__ import annotations

import pytest

from sensorstream.store.metrics import BodyError, parse_body

# The iot-kafka-spark document's first request, as its curl sends it: a comma before "}".
DOCUMENTS_REQUEST = b"""{
\t"temperature" : ["count", "min"],
\t"humidity" : ["average", "max"],
\t"from": "2020-01-13 15:12:00",
\t"to": "2020-01-13 15:13:00",
}"""


def test_the_documents_request_with_its_trailing_comma_is_read() -> None:
    assert parse_body(DOCUMENTS_REQUEST) == {
        "temperature": ["count", "min"],
        "humidity": ["average", "max"],
        "from": "2020-01-13 15:12:00",
        "to": "2020-01-13 15:13:00",
    }


def test_commas_and_brackets_inside_strings_are_left_alone() -> None:
    assert parse_body(b'{"a": ",}", "b": ",]", "c": "\\",}",}') == {
        "a": ",}",
        "b": ",]",
        "c": '",}',
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON: Expecting property name .* line 1 column 2"),
        (b'{"a": 1,,}', "the body is not JSON: .* line 1 column 9"),
        (b"[1, 2,", "the body is not JSON: Expecting value at line 1 column 7"),
        (b'{"a": "\xff"}', "the body is not UTF-8 text: invalid start byte at byte 7"),
    ],
)
def test_a_body_that_is_not_json_says_where(body: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        parse_body(body)
