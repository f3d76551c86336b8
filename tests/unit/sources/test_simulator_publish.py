from __future__ import annotations

import json

import pytest

from sensorstream.brokers.kafka import parse_kafka_url
from sensorstream.errors import ConfigError
from sensorstream.sources.simulator_publish import BURST, publish_fleet, publisher_for


class Recorder:
    """A publisher that keeps what it was sent."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.devices: list[str] = []
        self.closed = False

    def send(self, lines: list[bytes], devices: list[str]) -> None:
        self.lines += lines
        self.devices += devices

    def close(self) -> None:
        self.closed = True


def test_a_fleet_publishes_the_readings_asked_for_each_with_its_device() -> None:
    recorder = Recorder()
    done = publish_fleet(recorder, devices=50, rate=20_000, readings=3_000)
    assert done.readings == len(recorder.lines) == 3_000
    assert recorder.closed
    decoded = [json.loads(line) for line in recorder.lines]
    assert [d["device_id"] for d in decoded] == recorder.devices
    assert len(set(recorder.devices)) == 50
    assert 0 < done.rate <= 20_000 * 1.2  # paced to the target, not faster


def test_a_fleet_published_for_a_duration_holds_its_rate() -> None:
    recorder = Recorder()
    done = publish_fleet(recorder, devices=10, rate=2_000, seconds=0.5)
    assert 0.8 * 2_000 <= done.rate <= 1.2 * 2_000


@pytest.mark.parametrize(
    "url", ["http://host/x", "kafka://host:9092/", "kafka:///topic", "mqtt://host:1883/"]
)
def test_addresses_that_are_no_broker_topic_are_refused_clearly(url: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT/TOPIC"):
        publisher_for(url)


def test_a_kafka_address_is_read_as_bootstrap_and_topic() -> None:
    assert parse_kafka_url("kafka://10.0.0.1:9092,10.0.0.2:9092/fleet") == (
        "10.0.0.1:9092,10.0.0.2:9092",
        "fleet",
    )


def test_publishing_needs_a_count_or_a_duration() -> None:
    with pytest.raises(ConfigError, match="number of readings or a duration"):
        publish_fleet(Recorder(), devices=1, rate=1)


class Slow(Recorder):
    """A publisher that takes a (simulated) second for every batch: a broker falling behind."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_700_000_000.0
        self.batches: list[int] = []

    def clock(self) -> float:
        self.now += 0.01  # a tick's time passes between readings of the clock
        return self.now

    def send(self, lines: list[bytes], devices: list[str]) -> None:
        super().send(lines, devices)
        self.batches.append(len(lines))
        self.now += 1.0


def test_a_publisher_falling_behind_catches_up_in_bounded_bursts() -> None:
    slow = Slow()
    done = publish_fleet(slow, devices=100, rate=1e6, readings=120_000, clock=slow.clock)
    assert done.readings == 120_000
    assert max(slow.batches) <= BURST  # not a second's backlog (1M readings) at once
