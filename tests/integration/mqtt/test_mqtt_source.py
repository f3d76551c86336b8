"""The MQTT source against a real Mosquitto: readings in through a pipeline, whatever happens.

Each test subscribes to topics of its own (the broker is shared) and runs a pipeline with
the MQTT source and an in-memory sink, publishing with a paho client of its own.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from sensorstream.errors import SourceError
from sensorstream.pipeline.spec import parse_spec
from sensorstream.runtime.runner import Runner
from sensorstream.sources.mqtt import MqttSource
from sensorstream.sources.mqtt_intake import Intake
from sensorstream.testing import ListSink
from tests.brokers import MqttBroker
from tests.integration.mqtt.helpers import publish, running, unique, wait_until

pytestmark = pytest.mark.integration
T0 = int(time.time() * 1000)


def pipeline(folder: Path, source: str) -> Runner:
    """A pipeline reading the MQTT source ``source`` (YAML flow mapping), into a ListSink."""
    spec = parse_spec(
        f"""
name: mqtt-test
source: {source}
readings: {{measurements: {{temperature: float}}}}
event_time: {{out_of_orderness: 1h}}
checkpoint: {{dir: "{folder / "checkpoints"}", interval: 200ms}}
"""
    )
    return Runner(spec, sinks=[ListSink()])


def sink_of(runner: Runner) -> ListSink:
    sink = runner.sinks[0]
    assert isinstance(sink, ListSink)
    return sink


def readings(prefix: str, numbers: range, *, with_id: bool = False) -> list[tuple[str, bytes]]:
    """Numbered readings of seven devices on ``<prefix>/<device>/telemetry``."""
    messages = []
    for n in numbers:
        body: dict[str, object] = {"ts": T0 + n, "temperature": n}
        if with_id:
            body["device_id"] = f"own-{n % 7}"
        messages.append((f"{prefix}/d{n % 7}/telemetry", json.dumps(body).encode()))
    return messages


def temperatures(sink: ListSink) -> list[float]:
    return sorted(t for _, _, frame in sink.readings for t in frame["temperature"].to_list())


def source(broker: MqttBroker, prefix: str, **options: object) -> str:
    settings = {
        "type": "mqtt",
        "url": broker.url,
        "topics": [f"{prefix}/+/telemetry"],
        "device_id_from_topic": f"{prefix}/{{device_id}}/telemetry",
        "reconnect_backoff": "1s",
        "max_reconnect_backoff": "2s",
        **options,
    }
    return json.dumps(settings)


def test_published_readings_come_out_of_the_pipeline_each_message_accounted_for(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    prefix = unique("in")
    runner = pipeline(tmp_path, source(mosquitto, prefix))
    sink = sink_of(runner)
    with running(runner) as run:
        wait_until(lambda: _connected(runner), "connect")
        publish(mosquitto, readings(prefix, range(150)))
        publish(mosquitto, readings(prefix, range(150, 160), with_id=True))
        publish(mosquitto, [(f"{prefix}/dx/telemetry", b"{oops"), (f"{prefix}/dx/telemetry", b"")])
        wait_until(
            lambda: sink.count("readings") == 160 and sink.count("dead_letters") == 1, "reading"
        )
    assert run.error is None

    assert temperatures(sink) == [float(n) for n in range(160)]
    devices = {d for _, _, frame in sink.readings for d in frame["device_id"].to_list()}
    assert devices == {f"d{n}" for n in range(7)} | {f"own-{n}" for n in range(7)}
    letter = sink.dead_letters[0][2].row(0, named=True)
    assert letter["origin"] == f"mqtt topic {prefix}/dx/telemetry, message 160"
    assert (letter["reason_code"], letter["raw"]) == ("invalid_json", b"{oops")
    assert run.summary is not None
    counters = run.summary.counters
    assert (counters["lines"], counters["accepted"], counters["blank"]) == (162, 160, 1)
    assert counters["dead_letters"] == 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_what_is_published_while_the_pipeline_is_stopped_arrives_when_it_restarts(
    mosquitto: MqttBroker, tmp_path: Path, protocol: str
) -> None:
    prefix = unique("session")
    settings = source(mosquitto, prefix, protocol=protocol)
    first = pipeline(tmp_path, settings)
    with running(first):
        wait_until(lambda: _connected(first), "connect")
        publish(mosquitto, readings(prefix, range(10)))
        wait_until(lambda: sink_of(first).count("readings") == 10, "10 readings")

    publish(mosquitto, readings(prefix, range(10, 40)))  # the broker queues for the session
    second = pipeline(tmp_path, settings)  # same checkpoints: same client id, same session
    with running(second) as run:
        wait_until(lambda: sink_of(second).count("readings") == 30, "the 30 queued meanwhile")
    assert run.error is None
    assert temperatures(sink_of(second)) == [float(n) for n in range(10, 40)]


def test_without_the_log_readings_come_through_memory(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    prefix = unique("memory")
    runner = pipeline(tmp_path, source(mosquitto, prefix, durable=False, qos=0))
    sink = sink_of(runner)
    with running(runner):
        wait_until(lambda: _connected(runner), "connect")
        publish(mosquitto, readings(prefix, range(50)), qos=0)
        wait_until(lambda: sink.count("readings") == 50, "50 readings")

    assert not (tmp_path / "checkpoints.ingest-log").exists()


def test_after_the_broker_restarts_the_source_reconnects_and_reads_what_follows(
    mosquitto: MqttBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique("restart")
    runner = pipeline(tmp_path, source(mosquitto, prefix))
    sink = sink_of(runner)
    with caplog.at_level(logging.WARNING, "sensorstream.brokers.mqtt"), running(runner) as run:
        wait_until(lambda: _connected(runner), "connect")
        publish(mosquitto, readings(prefix, range(20)))
        wait_until(lambda: sink.count("readings") == 20, "the first 20 readings")
        mosquitto.restart()
        wait_until(lambda: _connected(runner), "reconnect")
        publish(mosquitto, readings(prefix, range(20, 40)))
        wait_until(lambda: sink.count("readings") == 40, "the 20 after the restart")
    assert run.error is None

    assert temperatures(sink) == [float(n) for n in range(40)]
    assert "lost the connection to the MQTT broker" in caplog.text


def test_a_broker_down_at_start_is_retried_with_warnings_then_read(
    mosquitto: MqttBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique("late")
    runner = pipeline(tmp_path, source(mosquitto, prefix))
    sink = sink_of(runner)
    mosquitto.stop()
    try:
        with caplog.at_level(logging.WARNING, "sensorstream.brokers.mqtt"), running(runner) as run:
            wait_until(lambda: "cannot reach the MQTT broker" in caplog.text, "a warning")
            time.sleep(1.5)
            assert run.alive()  # retrying, not crashed
            mosquitto.start()
            wait_until(lambda: _connected(runner), "connect once the broker is up")
            publish(mosquitto, readings(prefix, range(10)))
            wait_until(lambda: sink.count("readings") == 10, "10 readings")
    finally:
        mosquitto.start()
    assert run.error is None
    warnings = [r for r in caplog.records if "cannot reach" in r.getMessage()]
    assert "Connection refused" in warnings[0].getMessage()
    assert "connected to the MQTT broker" in caplog.text


def test_a_small_room_makes_the_network_thread_wait_and_loses_nothing(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    prefix = unique("pressure")
    options = {"max_queued_bytes": "4KiB", "max_unconsumed_bytes": "64KiB", "max_inflight": 100}
    runner = pipeline(tmp_path, source(mosquitto, prefix, **options))
    sink = sink_of(runner)
    count = 3000  # about 450 KB in the log: seven times its room
    with running(runner) as run:
        wait_until(lambda: _connected(runner), "connect")
        publish(mosquitto, readings(prefix, range(count)))
        wait_until(lambda: sink.count("readings") == count, f"{count} readings", timeout=90)
        intake = _intake(runner)
        queue, log = intake.queue, runner.source
        assert isinstance(log, MqttSource)
    assert run.error is None

    assert temperatures(sink) == [float(n) for n in range(count)]
    assert queue.waits > 0  # the callback waited: paho stopped reading the socket
    assert queue.peak_bytes <= 4096 + 1024  # bounded: at most one message past the room


@pytest.mark.parametrize("username", ["sensorstream"])
def test_a_password_opens_the_login_listener_and_a_wrong_one_stops_the_pipeline(
    mosquitto: MqttBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, username: str
) -> None:
    prefix = unique("login")
    url = f"mqtt://{mosquitto.host}:{mosquitto.auth_port}"
    monkeypatch.setenv("SENSORSTREAM_TEST_MQTT_PASSWORD", mosquitto.password)
    login = {"url": url, "username": username, "password_env": "SENSORSTREAM_TEST_MQTT_PASSWORD"}
    runner = pipeline(tmp_path / "right", source(mosquitto, prefix, **login))
    with running(runner) as run:
        wait_until(lambda: _connected(runner), "a login")
    assert run.error is None

    monkeypatch.setenv("SENSORSTREAM_TEST_MQTT_PASSWORD", "wrong")
    wrong = pipeline(tmp_path / "wrong", source(mosquitto, prefix, **login))
    started = time.monotonic()
    with pytest.raises(SourceError, match="refused the login of user 'sensorstream'") as raised:
        wrong.run()
    assert time.monotonic() - started < 10  # at once, not after retrying
    assert "Not authorized" in str(raised.value) or "password" in str(raised.value)


def test_tls_with_the_brokers_ca_connects_and_without_it_fails_clearly(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    prefix = unique("tls")
    url = f"mqtts://{mosquitto.host}:{mosquitto.tls_port}"
    runner = pipeline(
        tmp_path / "ca", source(mosquitto, prefix, url=url, ca_file=str(mosquitto.ca_file))
    )
    sink = sink_of(runner)
    with running(runner) as run:
        wait_until(lambda: _connected(runner), "a TLS connection")
        publish(mosquitto, readings(prefix, range(5)))
        wait_until(lambda: sink.count("readings") == 5, "5 readings over TLS")
    assert run.error is None

    untrusted = pipeline(tmp_path / "no-ca", source(mosquitto, prefix, url=url))
    with pytest.raises(
        SourceError,
        match=r"TLS with the MQTT broker .* its certificate did not verify .*; give the cert",
    ):
        untrusted.run()


def _intake(runner: Runner) -> Intake:
    source = runner.source
    assert isinstance(source, MqttSource)
    assert source.intake is not None
    return source.intake


def _connected(runner: Runner) -> bool:
    source = runner.source
    assert isinstance(source, MqttSource)
    return (
        source.intake is not None
        and source.intake.link.connected.is_set()
        and (source.subscribed.is_set())
    )
