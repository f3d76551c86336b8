"""A scenario's route through a broker: the addresses it takes, the sources it puts in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sensorstream.errors import ConfigError
from sensorstream.scenarios import scenario
from sensorstream.scenarios.brokers import Route, routed
from sensorstream.sources import KafkaSourceSettings, MqttSourceSettings

BEGAN = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("amqp://127.0.0.1/x", "--to takes mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC"),
        ("kafka://127.0.0.1:19092/", "is no Kafka address"),
        ("mqtt://127.0.0.1:18830", "is no MQTT address"),
        ("mqtt://127.0.0.1:nope/x", "is no MQTT address"),
        ("mqtt://127.0.0.1/a/+/b", "no wildcard"),
        ("mqtt://user:secret@127.0.0.1/x", "without a login"),
    ],
)
def test_a_bad_address_is_a_config_error_saying_the_form(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("+", r"\+")):
        Route.parse(url)


def test_every_feed_stream_is_read_from_a_topic_of_its_own() -> None:
    data = {
        "name": "access",
        "streams": {
            "devices": {"source": {"type": "feed", "feed": {"kind": "x"}}},
            "events": {"source": {"type": "feed", "feed": {"kind": "y"}}},
            "other": {"source": {"type": "file", "path": "a.ndjson"}},
        },
    }
    done = routed(data, Route.parse("kafka://127.0.0.1:19092/city"), BEGAN)
    sources = {name: stream["source"] for name, stream in done["streams"].items()}
    assert sources["devices"]["topic"] == "city-devices"
    assert sources["events"]["topic"] == "city-events"
    assert sources["events"]["start"] == BEGAN.isoformat()
    assert sources["other"] == {"type": "file", "path": "a.ndjson"}


def test_the_weather_scenario_via_mqtt_reads_its_topic_filter_at_qos_1() -> None:
    spec = scenario("weather").spec(via="mqtt://127.0.0.1:18830/demo")
    source = spec.stream_specs()["readings"].source
    assert isinstance(source, MqttSourceSettings)
    assert source.topics == ["demo/readings/+"]
    assert source.qos == 1
    assert source.durable
    assert source.device_id_from_topic == "demo/readings/{device_id}"


def test_the_weather_scenario_via_kafka_starts_at_the_runs_beginning() -> None:
    before = datetime.now(UTC)
    spec = scenario("weather").spec(via="kafka://127.0.0.1:19092/demo")
    source = spec.stream_specs()["readings"].source
    assert isinstance(source, KafkaSourceSettings)
    assert source.topic == "demo-readings"
    assert isinstance(source.start, datetime)
    assert source.start >= before
