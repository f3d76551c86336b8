"""MQTT messages into readings: one message one line, device ids from topics, named dead letters."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from sensorstream.brokers.mqtt.topics import TopicPattern
from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat
from sensorstream.readings.format import Limits
from sensorstream.sources.mqtt_messages import Arrived, decode_messages, with_field

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"})
PATTERN = TopicPattern.parse("devices/{device_id}/telemetry")
TS = 1_717_243_200_000


def messages(*payloads: bytes, topic: str = "devices/d1/telemetry") -> list[Arrived]:
    return [Arrived(17 + i, topic, payload, NOW) for i, payload in enumerate(payloads)]


def test_every_message_is_one_line_and_the_position_follows_the_last() -> None:
    batch = decode_messages(
        messages(
            b'{"device_id": "a", "ts": %d, "temperature": 1.5}' % TS,
            b'{\n  "device_id": "b",\n  "ts": %d,\n  "temperature": 2.5\n}\n' % TS,  # pretty
            b"",  # an empty payload: blank
        ),
        FORMAT,
        None,
    )

    assert (batch.payloads, batch.blank, batch.readings.height) == (2, 1, 2)
    assert batch.readings["device_id"].to_list() == ["a", "b"]
    assert batch.position == 20
    assert batch.arrived_us == (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_a_bad_payload_is_a_dead_letter_naming_its_topic_and_message_kept_as_it_came() -> None:
    bad = b'{"ts": %d,\n "temperature": oops}' % TS
    batch = decode_messages(messages(b"{}", bad, topic="devices/d 1/telemetry"), FORMAT, PATTERN)

    letters = batch.dead_letters.sort("origin").rows(named=True)
    assert [(row["origin"], row["reason_code"]) for row in letters] == [
        ("mqtt topic devices/d 1/telemetry, message 17", "missing_timestamp"),
        ("mqtt topic devices/d 1/telemetry, message 18", "invalid_json"),
    ]
    second = letters[1]
    assert (second["raw"], second["raw_length"]) == (bad, len(bad))
    assert second["raw_sha256"] == hashlib.sha256(bad).hexdigest()
    assert "line" not in second["reason"]  # a message is one line: no line number to give
    assert letters[0]["raw"] == b"{}"  # as it came, without the device id the topic added


def test_the_topic_names_the_device_of_a_payload_without_one_and_the_payload_wins() -> None:
    batch = decode_messages(
        messages(
            b'{"ts": %d, "temperature": 1.5}' % TS,
            b'{"device_id": "own", "ts": %d, "temperature": 2.5}' % TS,
            b'{"note": "device_id", "ts": %d, "temperature": 3.5}' % TS,
        )
        + messages(b'{"ts": %d, "temperature": 4.5}' % TS, topic="gateways/g1"),
        FORMAT,
        PATTERN,
    )

    assert batch.readings["device_id"].to_list() == ["d1", "own", "d1"]
    assert batch.dead_letters["reason_code"].to_list() == ["missing_device_id"]  # no match


def test_a_device_field_of_another_name_is_filled_under_that_name() -> None:
    fmt = ReadingFormat(measurements={"temperature": "float"}, device_field="sensor")
    batch = decode_messages(messages(b'{"ts": %d, "temperature": 1.5}' % TS), fmt, PATTERN)

    assert batch.readings["device_id"].to_list() == ["d1"]


def test_a_nested_device_field_cannot_be_filled_from_the_topic() -> None:
    fmt = ReadingFormat(measurements={"temperature": "float"}, device_field="meta.id")

    with pytest.raises(ConfigError, match=r"readings\.device_field 'meta\.id' is a nested one"):
        decode_messages(messages(b"{}"), fmt, PATTERN)


def test_messages_that_arrived_apart_are_judged_by_their_own_arrival_times() -> None:
    soon = (NOW + timedelta(minutes=30)).timestamp() * 1000
    fmt = ReadingFormat(measurements={"temperature": "float"}, max_future=timedelta(minutes=10))
    payload = b'{"device_id": "a", "ts": %d, "temperature": 1.5}' % soon
    early = Arrived(0, "t", payload, NOW)
    late = Arrived(1, "t", payload, NOW + timedelta(minutes=25))

    batch = decode_messages([early, late], fmt, None)

    assert batch.dead_letters["origin"].to_list() == ["mqtt topic t, message 0"]
    assert batch.dead_letters["reason_code"].to_list() == ["time_in_future"]
    assert batch.readings.height == 1


def test_an_oversized_payload_is_a_dead_letter_that_keeps_its_first_bytes() -> None:
    fmt = ReadingFormat(
        measurements={"temperature": "float"}, limits=Limits(max_payload_bytes=64, max_raw_bytes=8)
    )
    big = b'{"device_id": "a", "pad": "' + b"x" * 100 + b'"}'

    letter = decode_messages(messages(big), fmt, None).dead_letters.row(0, named=True)

    assert letter["reason_code"] == "payload_too_large"
    assert (letter["raw"], letter["raw_length"]) == (big[:8], len(big))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"ts": 1}', b'{"ts": 1,"device_id":"d/1"}'),
        (b'  {"ts": 1}  \r', b'  {"ts": 1,"device_id":"d/1"}'),
        (b"{}", b'{"device_id":"d/1"}'),
        (b'{"device_id": null}', b'{"device_id": null}'),  # there: the decoder judges it
        (b"[1, 2]", b"[1, 2]"),
        (b"{oops", b"{oops"),
        (b'{"x": "\\"device_id\\""}', b'{"x": "\\"device_id\\"","device_id":"d/1"}'),
    ],
)
def test_a_field_is_added_only_to_an_object_lacking_it(payload: bytes, expected: bytes) -> None:
    assert with_field(payload, "device_id", b'"device_id"', "d/1") == expected
