"""The MQTT sink without a broker: settings, and what it would publish for a batch.

What a broker receives: tests/integration/mqtt/test_mqtt_sink.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest
from pydantic import ValidationError

from sensorstream.errors import SinkError
from sensorstream.sinks import SINKS, MqttSink, MqttSinkSettings
from sensorstream.sinks.base import SinkBatch

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def settings(**options: object) -> MqttSinkSettings:
    return MqttSinkSettings.model_validate({"url": "mqtt://127.0.0.1:1", **options})


def test_it_is_registered_with_settings_beside_it() -> None:
    assert SINKS["mqtt"] is MqttSink
    built = settings().build()
    assert (built.qos, built.retain, built.flush_timeout) == (1, False, timedelta(seconds=30))
    assert built.results_topic == built.alerts_topic == "sensorstream/{pipeline}/{step}/{key}"


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"results_topic": "plant/+/{key}"}, "a published topic holds no '+', '#' or NUL"),
        ({"alerts_topic": "alerts/{rule}"}, "unknown placeholder {rule}"),
        ({"qos": 2}, "Input should be 0 or 1"),
        ({"flush_timeout": "0s"}, "flush_timeout must be positive"),
        ({"max_pending": 0}, "greater than or equal to 1"),
    ],
)
def test_settings_that_cannot_work_are_refused_saying_why(
    options: dict[str, object], why: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(why)):
        settings(**options)


def results(devices: list[str | None], starts: list[int], ops: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": devices,
            "window_start": [T0 + timedelta(seconds=s) for s in starts],
            "count": [1] * len(devices),
            "revision": [0] * len(devices),
            "final": [False] * len(devices),
            "_op": ops,
        }
    )


def published(sink: MqttSink, frame: pl.DataFrame) -> list[tuple[str, bytes, bool]]:
    sink._pipeline, sink._keys = "plant", {"per_device": ("device_id",)}
    return list(sink._results("per_device", frame))


def test_results_go_out_in_window_order_on_escaped_topics_as_json() -> None:
    frame = results(["b/+#", None, "a"], [20, 0, 10], ["upsert", "upsert", "upsert"])

    out = published(settings().build(), frame)

    assert [topic for topic, _, _ in out] == [
        "sensorstream/plant/per_device/%null",
        "sensorstream/plant/per_device/a",
        "sensorstream/plant/per_device/b%2F%2B%23",
    ]
    body = orjson.loads(out[2][1])
    assert body == {
        "pipeline": "plant",
        "step": "per_device",
        "device_id": "b/+#",
        "window_start": "2024-06-01T00:00:20+00:00",
        "count": 1,
        "revision": 0,
        "final": False,
    }
    assert not any(retain for _, _, retain in out)


def test_a_deletion_is_an_empty_retained_message_or_says_delete() -> None:
    frame = results(["a"], [0], ["delete"])

    assert published(settings(retain=True).build(), frame) == [
        ("sensorstream/plant/per_device/a", b"", True)
    ]
    ((_, payload, retain),) = published(settings().build(), frame)
    assert orjson.loads(payload)["_op"] == "delete"
    assert not retain


def test_a_sink_not_opened_says_so() -> None:
    with pytest.raises(SinkError, match="is not open; call open"):
        settings().build().write(SinkBatch(0, 1))
