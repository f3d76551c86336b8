"""The MQTT source without a broker: settings, its log read back, resuming, its identity.

Against a real Mosquitto: tests/integration/mqtt/.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from sensorstream.pipeline.spec import parse_spec
from sensorstream.readings import ReadingFormat
from sensorstream.sources import SOURCES, MqttSource, MqttSourceSettings, SourceBatch
from sensorstream.sources.ingest_log import IngestLog
from sensorstream.sources.mqtt_intake import Message, MessageQueue

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"})
URL = "mqtt://127.0.0.1:1"  # nothing listens there; a replay never connects


def clock() -> datetime:
    return NOW


def settings(**options: object) -> MqttSourceSettings:
    return MqttSourceSettings.model_validate(
        {"url": URL, "topics": ["devices/+/telemetry"], **options}
    )


def received(log_dir: Path, *groups: list[tuple[str, bytes]]) -> None:
    """Append messages as the source's writer does: each group one sync, a second apart."""
    with IngestLog(log_dir) as log:
        for number, group in enumerate(groups):
            entries = [(topic.encode(), payload) for topic, payload in group]
            log.append_tagged(entries, NOW + timedelta(seconds=number))


def read_all(source: MqttSource, resume_after: dict[int, int] | None = None) -> list[SourceBatch]:
    with closing(source.read(FORMAT, resume_after or {}, clock)) as items:
        return [item for item in items if item is not None]


def reading(device: str, n: int) -> bytes:
    return b'{"device_id": "%s", "ts": %d, "temperature": %d.5}' % (
        device.encode(),
        1_717_243_200_000 + n,
        n,
    )


def test_it_is_registered_with_settings_beside_it() -> None:
    assert SOURCES["mqtt"] is MqttSource
    source = settings().build()
    assert isinstance(source, MqttSource)
    assert (source.qos, source.durable, source.session.persistent) == (1, True, True)
    assert source.session.expiry == timedelta(days=1)


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"topics": []}, "at least 1 item"),
        ({"topics": ["a/#/b"]}, "'#' may only be the last level"),
        ({"topics": ["a/+", "a/+"]}, "topics lists a filter twice"),
        ({"device_id_from_topic": "devices/+/x"}, "one whole level must be {device_id}"),
        ({"qos": 2}, "Input should be 0 or 1"),
        ({"follow": False, "durable": False}, "only a durable source keeps"),
        ({"max_unconsumed_bytes": "20MiB"}, "must be at least twice max_queued_bytes"),
        ({"session_expiry": "50000d"}, "session_expiry must lie between"),
        ({"max_inflight": 70000}, "less than or equal to 65535"),
        ({"url": "mqtt://h", "ca_file": "ca.pem"}, "ca_file and insecure are TLS settings"),
    ],
)
def test_settings_that_cannot_work_are_refused_saying_why(
    options: dict[str, object], why: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(why)):
        settings(**options)


def test_a_pipeline_yaml_declares_an_mqtt_source_and_sink() -> None:
    spec = parse_spec(
        """
name: plant
source:
  type: mqtt
  url: mqtts://broker.local
  topics: [devices/+/telemetry]
  device_id_from_topic: devices/{device_id}/telemetry
  protocol: 3.1.1
readings: {measurements: {temperature: float}}
sinks:
  - {type: mqtt, url: "mqtt://broker.local", retain: true}
"""
    )

    assert isinstance(spec.source, MqttSourceSettings)
    assert spec.source.protocol == "3.1.1"
    assert spec.source.uses_tls
    assert parse_spec(spec.to_yaml()) == spec


def test_a_wrong_setting_in_yaml_names_its_line_and_field() -> None:
    text = """name: plant
source:
  type: mqtt
  url: mqtt://broker.local
  topics: ["devices/#/x"]
readings: {measurements: {temperature: float}}
"""
    with pytest.raises(Exception, match=r"line 5, source.topics: .*'#' may only be the last"):
        parse_spec(text)


def test_a_replay_reads_the_received_messages_in_order_named_by_their_topics(
    tmp_path: Path,
) -> None:
    received(
        tmp_path,
        [("devices/a/telemetry", reading("a", 1)), ("devices/b/telemetry", b"{oops")],
        [("devices/c/telemetry", b'{"ts": 1717243200000, "temperature": 3.5}'), ("x", b"")],
    )
    source = settings(
        log_dir=tmp_path, follow=False, device_id_from_topic="devices/{device_id}/telemetry"
    ).build()

    with closing(source):
        batches = read_all(source)

    assert [b.position for b in batches] == [4]
    batch = batches[0]
    assert batch.readings["device_id"].to_list() == ["a", "c"]
    assert (batch.payloads, batch.blank) == (3, 1)
    assert batch.dead_letters["origin"].to_list() == ["mqtt topic devices/b/telemetry, message 1"]


def test_resuming_after_a_position_reads_exactly_the_messages_after_it(tmp_path: Path) -> None:
    received(tmp_path, *[[("devices/d/telemetry", reading("d", n))] for n in range(10)])
    source = settings(log_dir=tmp_path, follow=False, batch_bytes=100).build()

    with closing(source):
        everything = read_all(source)
        rest = read_all(source, {0: 4})

    assert len(everything) > 2
    assert sum(b.payloads for b in rest) == 6
    assert rest[0].readings["temperature"].to_list()[0] == 4.5


def test_a_run_keeps_the_log_and_takes_the_client_id_beside_the_checkpoints(
    tmp_path: Path,
) -> None:
    source = settings().build()
    source.use_checkpoint_dir(tmp_path / ".sensorstream" / "plant", "readings")

    assert source.log_dir == tmp_path / ".sensorstream" / "plant.ingest-log"
    assert source.client_id is not None
    assert source.client_id.startswith("sensorstream-plant-readings-")
    given = settings(client_id="mine", log_dir=tmp_path / "log").build()
    given.use_checkpoint_dir(tmp_path / ".sensorstream" / "plant", "readings")
    assert (given.client_id, given.log_dir) == ("mine", tmp_path / "log")


def test_a_changed_broker_or_topic_list_resumes_the_log_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    received(tmp_path, [("devices/a/telemetry", reading("a", 1))])
    with closing(settings(log_dir=tmp_path).build()) as before:
        recorded = before.identity()
    received(tmp_path, [("devices/a/telemetry", reading("a", 2))])

    with closing(settings(log_dir=tmp_path, topics=["sites/+/x"]).build()) as after:
        with caplog.at_level(logging.WARNING, "sensorstream.brokers.mqtt"):
            change = after.compare(recorded)
        assert change is not None
        assert change.grown  # the log grew: resumable
        assert after._stale_topics == ("devices/+/telemetry",)  # unsubscribed on connecting
    assert "subscribed to devices/+/telemetry" in caplog.text
    assert "resuming the local log" in caplog.text


def test_another_log_is_refused_as_the_http_source_refuses_it(tmp_path: Path) -> None:
    with closing(settings(log_dir=tmp_path / "one").build()) as one:
        recorded = one.identity()
    with closing(settings(log_dir=tmp_path / "two").build()) as two:
        change = two.compare(recorded)

    assert change is not None
    assert not change.grown
    assert "is not the one the checkpoint was taken of" in change.description


def test_a_source_without_the_log_has_nothing_to_compare() -> None:
    source = settings(durable=False).build()

    assert source.identity() == {"url": URL, "topics": ["devices/+/telemetry"]}
    assert source.compare({"url": "mqtt://elsewhere", "topics": []}) is None


def message(payload: bytes) -> Message:
    return Message("t", payload, 1, 1, 0, NOW)


def test_a_full_queue_makes_the_producer_wait_until_there_is_room() -> None:
    queue = MessageQueue(max_bytes=message(b"x" * 100).size * 2)
    for _ in range(2):
        assert queue.put(message(b"x" * 100))
    done = threading.Event()

    def third() -> None:
        queue.put(message(b"x" * 100))
        done.set()

    waiting = threading.Thread(target=third)
    waiting.start()
    time.sleep(0.2)
    assert not done.is_set()  # paho's thread would wait here: the socket is not read
    assert len(queue.take(max_bytes=1, timeout=0)) == 1  # at least one, whatever the bound
    waiting.join(5)
    assert done.is_set()
    assert queue.waits == 1
    assert len(queue) == 2


def test_an_empty_queue_takes_a_message_larger_than_its_bound_and_a_stop_wakes_producers() -> None:
    queue = MessageQueue(max_bytes=10)
    assert queue.put(message(b"x" * 100))
    results: list[bool] = []
    waiting = threading.Thread(target=lambda: results.append(queue.put(message(b"y"))))
    waiting.start()
    queue.stop()
    waiting.join(5)

    assert results == [False]  # refused, never acknowledged: the broker sends it again
    assert len(queue.take(max_bytes=1000, timeout=0)) == 1
