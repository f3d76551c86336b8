"""The MQTT sink against a real Mosquitto: what a paho subscriber reads back.

Every test publishes under a pipeline name of its own (the broker is shared), so its topics
are its own: ``sensorstream/<pipeline>/<step>/<key>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from sensorstream.errors import SinkError
from sensorstream.pipeline.spec import parse_spec
from sensorstream.runtime.runner import Runner
from sensorstream.sinks import MqttSink, MqttSinkSettings
from sensorstream.sinks.base import PipelineInfo, SinkBatch, StepInfo
from sensorstream.testing import ListSource
from tests.brokers import MqttBroker
from tests.contract.test_sinks import INFO, all_writes, some_checkpoints
from tests.integration.mqtt.helpers import Received, Subscriber, unique

pytestmark = pytest.mark.integration
T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)
HOSTILE = "a/b+c#"  # a device id that would add levels and wildcards if not escaped


def reading(device: str, second: int, temperature: float) -> str:
    ts = (T0 + timedelta(seconds=second)).isoformat()
    return json.dumps({"device_id": device, "ts": ts, "temperature": temperature})


def pipeline_name() -> str:
    return unique("sink").replace("-", "_")


def retained(broker: MqttBroker, topic_filter: str) -> dict[str, bytes]:
    """What the broker retains under ``topic_filter``: a new subscriber's first messages."""
    with Subscriber(broker, topic_filter).listening() as subscriber:
        messages = subscriber.settled()
    assert all(message.retain for message in messages)
    return {message.topic: message.payload for message in messages}


def sink(broker: MqttBroker, **options: object) -> MqttSink:
    settings = MqttSinkSettings.model_validate({"url": broker.url, **options})
    return settings.build()


def test_a_pipelines_results_and_alerts_arrive_as_json_and_results_are_retained(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    name = pipeline_name()
    spec = parse_spec(
        f"""
name: {name}
source: {{type: simulator}}
readings: {{measurements: {{temperature: float}}}}
event_time: {{out_of_orderness: 0s, idle_timeout: null}}
steps:
  - name: per_device
    window: {{type: tumbling, size: 10s}}
    aggregates: [count, mean(temperature)]
  - name: hot
    input: per_device
    rule: {{threshold: temperature_mean, above: {{warning: 30}}}}
sinks: [{{type: mqtt, url: "{mosquitto.url}", retain: true}}]
checkpoint: {{dir: "{tmp_path / "checkpoints"}"}}
"""
    )
    lines = [
        reading(device, second, temperature)
        for second in range(0, 30, 2)
        for device, temperature in (("d1", 35.0), (HOSTILE, 10.0))
    ]
    with Subscriber(mosquitto, f"sensorstream/{name}/#").listening() as subscriber:
        Runner(spec, source=ListSource([lines])).run()  # closing the sink flushes it
        messages = subscriber.settled()

    results = [m for m in messages if m.topic.startswith(f"sensorstream/{name}/per_device/")]
    topics = {m.topic for m in results}
    assert topics == {
        f"sensorstream/{name}/per_device/d1",
        f"sensorstream/{name}/per_device/a%2Fb%2Bc%23",
    }
    by_key = _by_device(results)
    first = by_key["d1"][0]
    assert set(first) >= {"pipeline", "step", "device_id", "window_start", "window_end", "count"}
    assert (first["pipeline"], first["step"]) == (name, "per_device")
    assert first["window_start"] == "2024-06-01T12:00:00+00:00"
    assert [r["count"] for r in by_key["d1"]] == [5, 5, 5]
    assert by_key[HOSTILE][0]["temperature_mean"] == 10.0

    alerts = [m for m in messages if m.topic == f"sensorstream/{name}/hot/d1"]
    assert [orjson.loads(m.payload)["state"] for m in alerts] == ["firing"]
    assert not any(m.retain for m in alerts)
    assert not [m for m in messages if m.topic.startswith(f"sensorstream/{name}/hot/a")]

    kept = retained(mosquitto, f"sensorstream/{name}/#")
    assert set(kept) == topics  # one per key, the latest; transitions are not retained
    assert orjson.loads(kept[f"sensorstream/{name}/per_device/d1"])["window_start"] == (
        "2024-06-01T12:00:20+00:00"
    )


def _by_device(messages: list[Received]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        body = orjson.loads(message.payload)
        found.setdefault(body["device_id"], []).append(body)
    return found


SESSIONS = StepInfo("sessions", ("device_id",), ("count",))


def result(op: str, start_s: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": ["d1"],
            "window_start": [T0 + timedelta(seconds=start_s)],
            "window_end": [T0 + timedelta(seconds=start_s + 5)],
            "count": [3],
            "revision": [0],
            "final": [False],
            "_op": [op],
        }
    )


@pytest.fixture
def opened(mosquitto: MqttBroker) -> Iterator[tuple[str, list[MqttSink]]]:
    """A pipeline name of its own, and the sinks a test opens, closed after it."""
    sinks: list[MqttSink] = []
    yield pipeline_name(), sinks
    for made in sinks:
        made.close()


def test_a_retracted_result_clears_the_retained_value_or_says_delete(
    mosquitto: MqttBroker, opened: tuple[str, list[MqttSink]]
) -> None:
    name, sinks = opened
    info = PipelineInfo(name, (SESSIONS,), {})
    retaining, plain = (
        sink(mosquitto, retain=True),
        sink(mosquitto, results_topic="plain/{pipeline}/{key}"),
    )
    sinks += [retaining, plain]
    with Subscriber(mosquitto, f"plain/{name}/#").listening() as subscriber:
        for made in (retaining, plain):
            made.open(info)
            made.write(SinkBatch(0, 1, results={"sessions": result("upsert", 0)}))
            made.flush()
            # A merge retracts the old session and emits the merged one (later in time).
            merged = pl.concat(
                [result("upsert", 2).with_columns(count=pl.lit(4, pl.Int64)), result("delete", 0)]
            )
            made.write(SinkBatch(0, 2, results={"sessions": merged}))
            made.flush()
        published = subscriber.settled()

    kept = retained(mosquitto, f"sensorstream/{name}/#")
    assert orjson.loads(kept[f"sensorstream/{name}/sessions/d1"])["count"] == 4
    retaining.write(SinkBatch(0, 3, results={"sessions": result("delete", 2)}))
    retaining.flush()
    assert retained(mosquitto, f"sensorstream/{name}/#") == {}  # cleared
    bodies = [orjson.loads(m.payload) for m in published]
    assert [(b["count"], b.get("_op")) for b in bodies] == [(3, None), (3, "delete"), (4, None)]


def test_replaying_after_a_restore_leaves_the_broker_retaining_what_one_run_would(
    mosquitto: MqttBroker, opened: tuple[str, list[MqttSink]]
) -> None:
    writes = all_writes()

    def run(name: str, crashed_after: int, written: int, positions: dict[int, int]) -> None:
        info = replace(INFO, name=name)
        first = sink(mosquitto, retain=True)
        first.open(info)
        for batch in writes[:crashed_after]:
            first.write(batch)
        first.close()
        again = sink(mosquitto, retain=True)
        again.open(info)
        again.restore(positions)
        for batch in writes[written:]:
            again.write(batch)
        again.close()

    def kept(name: str) -> dict[str, dict[str, Any]]:
        found = retained(mosquitto, f"sensorstream/{name}/#")
        prefix = len(f"sensorstream/{name}/")
        return {
            topic[prefix:]: {k: v for k, v in orjson.loads(payload).items() if k != "pipeline"}
            for topic, payload in found.items()
        }

    once = opened[0]
    run(once, crashed_after=len(writes), written=len(writes), positions={})
    expected = kept(once)
    assert len(expected) > 3
    for number, checkpoint in enumerate(some_checkpoints(writes)[1:3]):
        for crashed_after in (checkpoint.written, len(writes)):
            name = f"{once}_{number}_{crashed_after}"
            run(name, crashed_after, checkpoint.written, checkpoint.positions)
            where = f"restored to {checkpoint.positions} after {crashed_after} writes"
            assert kept(name) == expected, where


def test_flush_raises_after_its_timeout_when_the_broker_is_unreachable() -> None:
    unreachable = MqttSinkSettings(url="mqtt://127.0.0.1:9", flush_timeout=timedelta(seconds=1))
    made = unreachable.build()
    made.open(PipelineInfo("unreachable", (SESSIONS,), {}))
    made.write(SinkBatch(0, 1, results={"sessions": result("upsert", 0)}))

    started = time.monotonic()
    with pytest.raises(SinkError, match=r"waited 1 s for 1 messages .*\(not connected\)"):
        made.flush()
    assert time.monotonic() - started < 5
    with pytest.raises(SinkError):
        made.close()  # still unacknowledged; it disconnects all the same


def test_a_wrong_password_is_a_clear_error_at_the_first_flush(mosquitto: MqttBroker) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.auth_port}"
    made = MqttSinkSettings(url=url, username=mosquitto.username, password="wrong").build()
    made.open(PipelineInfo(pipeline_name(), (SESSIONS,), {}))
    made.write(SinkBatch(0, 1, results={"sessions": result("upsert", 0)}))

    with pytest.raises(SinkError, match="refused the login of user 'sensorstream'"):
        made.flush()
    with pytest.raises(SinkError, match="refused the login"):
        made.close()


def test_a_login_and_tls_carry_the_results_too(mosquitto: MqttBroker) -> None:
    name = pipeline_name()
    for options in (
        {
            "url": f"mqtt://{mosquitto.host}:{mosquitto.auth_port}",
            "username": "sensorstream",
            "password": "sensorstream",
        },
        {
            "url": f"mqtts://{mosquitto.host}:{mosquitto.tls_port}",
            "ca_file": str(mosquitto.ca_file),
        },
    ):
        made = MqttSinkSettings.model_validate({**options, "retain": True}).build()
        made.open(PipelineInfo(name, (SESSIONS,), {}))
        made.write(SinkBatch(0, 1, results={"sessions": result("upsert", 0)}))
        made.close()
        assert list(retained(mosquitto, f"sensorstream/{name}/#")) == [
            f"sensorstream/{name}/sessions/d1"
        ]
