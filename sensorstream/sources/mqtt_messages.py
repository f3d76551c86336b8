"""MQTT messages into readings: one message, one line, decoded in runs, each named by its topic.

A message's payload is one reading: a JSON object, however it is laid out (its line breaks
are read as spaces, which JSON allows between tokens and forbids inside strings). An empty
payload is a blank line: counted, not a payload. Messages that arrived together (one sync of
the MQTT source's log, or one take from its queue) share an arrival time and are decoded
together, as NDJSON, by the decoder every source uses; so a replay of the log decodes each
message exactly as its first reading did, however the batches are cut.

With a topic pattern (``device_id_from_topic: devices/{device_id}/telemetry``), a payload
**without** a device id gets its topic's: the field is added at the end of the object before
decoding. A payload's own device id wins. A topic the pattern does not match adds nothing.

A dead letter's ``origin`` names the message: ``mqtt topic devices/d1/telemetry, message
17``, 17 being its sequence number (its position in the MQTT source), and it keeps the
payload exactly as it arrived.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import polars as pl

from sensorstream.brokers.mqtt.topics import TopicPattern
from sensorstream.engine.time import micros
from sensorstream.errors import ConfigError
from sensorstream.readings import (
    Decoded,
    ReadingFormat,
    dead_letters,
    decode_json_lines,
    empty_dead_letters,
)
from sensorstream.readings.format import PATH_SEPARATOR
from sensorstream.sources.base import SourceBatch

__all__ = ["Arrived", "decode_messages", "message_origin"]

_ORIGIN = "messages"  # what the decoder names a run; each dead letter is renamed after
_LINE = re.compile(rf"^line (\d+) of {_ORIGIN}$")
_OF_LINE = re.compile(r" of line \d+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Arrived:
    """One message as the source holds it: its sequence number, topic, payload, arrival."""

    sequence: int
    topic: str
    payload: bytes
    arrived_at: datetime


def message_origin(topic: str, sequence: int) -> str:
    """Where a dead letter came from, for a person.

    >>> message_origin("devices/d1/telemetry", 17)
    'mqtt topic devices/d1/telemetry, message 17'
    """
    return f"mqtt topic {topic}, message {sequence}"


def decode_messages(
    messages: Sequence[Arrived], fmt: ReadingFormat, pattern: TopicPattern | None
) -> SourceBatch:
    """The messages' readings and dead letters, every message one line; see the module.

    Runs of messages with one arrival time are decoded at once. The batch's position is the
    sequence number after the last message.
    """
    if pattern is not None and PATH_SEPARATOR in fmt.device_field:
        msg = (
            f"device_id_from_topic adds a top-level field, and readings.device_field "
            f"{fmt.device_field!r} is a nested one: use a top-level device field, or leave "
            "device_id_from_topic out"
        )
        raise ConfigError(msg)
    parts: list[Decoded] = []
    start = 0
    for end in range(1, len(messages) + 1):
        if end == len(messages) or messages[end].arrived_at != messages[start].arrived_at:
            parts.append(_decode_run(messages[start:end], fmt, pattern))
            start = end
    dead = [part.dead_letters for part in parts if part.dead_letters.height]
    return SourceBatch(
        partition=0,
        position=messages[-1].sequence + 1,
        readings=pl.concat([part.readings for part in parts]),
        dead_letters=pl.concat(dead) if dead else empty_dead_letters(),
        payloads=sum(part.payloads for part in parts),
        blank=sum(part.blank for part in parts),
        arrived_us=micros(messages[0].arrived_at - _EPOCH),  # the oldest: the batch's latency
    )


def _decode_run(
    run: Sequence[Arrived], fmt: ReadingFormat, pattern: TopicPattern | None
) -> Decoded:
    key = orjson.dumps(fmt.device_field)
    lines = []
    for message in run:
        line = message.payload.replace(b"\n", b" ")
        if pattern is not None and (device := pattern.device_id(message.topic)) is not None:
            line = with_field(line, fmt.device_field, key, device)
        lines.append(line)
    chunk = b"\n".join(lines) + b"\n"  # every message one line, an empty one a blank line
    decoded = decode_json_lines(chunk, fmt, arrived_at=run[0].arrived_at, origin=_ORIGIN)
    if decoded.dead_letters.height == 0:
        return decoded
    return Decoded(
        decoded.readings,
        _named(decoded.dead_letters, run, fmt),
        decoded.payloads,
        decoded.blank,
    )


def with_field(payload: bytes, field: str, key: bytes, value: str) -> bytes:
    """``payload`` with ``"field": value`` added at its end, if it is an object lacking it.

    Anything else (not an object, not JSON, the field already there) is left as it is, for
    the decoder to judge. Adding at the end keeps the columns a JSON error names.

    >>> with_field(b'{"ts": 1}', "device_id", b'"device_id"', "d1")
    b'{"ts": 1,"device_id":"d1"}'
    >>> with_field(b'{"device_id": "own"}', "device_id", b'"device_id"', "d1")
    b'{"device_id": "own"}'
    >>> with_field(b"{ }", "device_id", b'"device_id"', "d1")
    b'{"device_id":"d1"}'
    """
    body = payload.rstrip()
    if not body.endswith(b"}") or not body.lstrip().startswith(b"{"):
        return payload
    if key in body:  # perhaps the field, perhaps a value that reads like it: look closer
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return payload
        if not isinstance(parsed, dict) or field in parsed:
            return payload
    inner = body[:-1].rstrip()
    comma = b"" if inner.endswith(b"{") else b","
    return inner + comma + key + b":" + orjson.dumps(value) + b"}"


def _named(found: pl.DataFrame, run: Sequence[Arrived], fmt: ReadingFormat) -> pl.DataFrame:
    """Dead letters naming their messages, holding the payloads as they arrived."""
    raws, origins, reasons = [], [], []
    for origin, reason in found.select("origin", "reason").rows():
        match = _LINE.match(origin)
        assert match is not None  # the decoder names every line so
        message = run[int(match.group(1)) - 1]
        raws.append(message.payload)
        origins.append(message_origin(message.topic, message.sequence))
        reasons.append(_OF_LINE.sub("", reason))  # a message is one line: no line number
    return dead_letters(
        raws,
        found["reason_code"].to_list(),
        reasons,
        origins,
        run[0].arrived_at,
        max_raw_bytes=fmt.limits.max_raw_bytes,
    )
