"""A simulated fleet published live to a broker: ``sensorstream simulate --to URL``.

The fleet is the simulator's (:class:`~sensorstream.sources.synthetic.Fleet`): each device
reports at its own phase, event time "now", the same payloads a pipeline's simulator
source makes. Every tick the readings due since the last one are published, so the fleet
holds its rate however long a publish takes, and the report says the rate achieved (a
broker or client slower than the target shows there, never silently).

``kafka://HOST:PORT/TOPIC`` produces each reading keyed by its device id (a device stays
in one partition); ``mqtt://HOST:PORT/TOPIC`` publishes each to ``TOPIC``, where
``{device_id}`` in it becomes the device's id (``devices/{device_id}/telemetry``).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaException, Producer
from paho.mqtt.enums import CallbackAPIVersion

from sensorstream.brokers.kafka import parse_kafka_url, produce_waiting
from sensorstream.errors import ConfigError, SourceError
from sensorstream.sources.synthetic import Fleet, mix_seed
from sensorstream.sources.synthetic_payloads import Layout, json_lines, payloads

TICK_S = 0.05
BURST = 50_000  # readings scheduled in one tick at most
IN_FLIGHT = 100  # unacknowledged MQTT messages at most (paho's in-flight window)


class Publisher(Protocol):
    """Where published readings go: one message per reading."""

    def send(self, lines: list[bytes], devices: list[str]) -> None:
        """Publish readings (JSON each), of these devices."""

    def close(self) -> None:
        """Wait until everything sent is acknowledged, then disconnect."""


@dataclass(frozen=True)
class Published:
    """What a run published: readings, seconds, and the rate achieved."""

    readings: int
    seconds: float
    target_rate: float

    @property
    def rate(self) -> float:
        """Readings a second, achieved."""
        return self.readings / self.seconds if self.seconds > 0 else 0.0


class KafkaPublisher:
    """Readings produced to one topic, keyed by device id."""

    def __init__(self, url: str) -> None:
        bootstrap, self.topic = parse_kafka_url(url)
        self.where = url
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 10}
        )
        self.failures: list[str] = []

    def _report(self, error: object, _message: object) -> None:
        if error is not None:
            self.failures.append(str(error))

    def send(self, lines: list[bytes], devices: list[str]) -> None:
        """Produce each reading, waiting while the client's queue is full."""
        for line, device in zip(lines, devices, strict=True):
            produce_waiting(
                self.producer, self.topic, line, device.encode(), on_delivery=self._report
            )
        self.producer.poll(0)
        if self.failures:
            msg = f"Kafka at {self.where} refused readings: {self.failures[0]}"
            raise SourceError(msg)

    def close(self) -> None:
        """Wait for every acknowledgement (up to a minute)."""
        left = self.producer.flush(60)
        if left or self.failures:
            why = self.failures[0] if self.failures else f"{left} unacknowledged"
            msg = f"Kafka at {self.where} did not take every reading: {why}"
            raise SourceError(msg)


class MqttPublisher:
    """Readings published to a topic (with ``{device_id}`` filled in), QoS 1 by default."""

    def __init__(self, url: str, qos: int = 1) -> None:
        parts = urlsplit(url)
        self.topic = unquote(parts.path.lstrip("/"))
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or not self.topic:
            msg = f"{url!r} is no MQTT address: write mqtt://HOST:PORT/TOPIC"
            raise ConfigError(msg)
        self.where, self.qos = url, qos
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if parts.username:
            self.client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self.client.tls_set()
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(IN_FLIGHT)
        try:
            self.client.connect(parts.hostname, parts.port or 1883)
        except OSError as error:
            msg = f"cannot reach the MQTT broker at {url}: {error}"
            raise SourceError(msg) from None
        self.client.loop_start()
        self.pending: deque[mqtt.MQTTMessageInfo] = deque()

    def send(self, lines: list[bytes], devices: list[str]) -> None:
        """Publish each reading, never more than ``IN_FLIGHT`` of them unacknowledged.

        paho keeps the messages beyond its in-flight window in a list it walks on every
        acknowledgement, so handing it a whole burst at once makes each acknowledgement cost
        the burst's length: waiting for the oldest keeps its queue (and the cost) bounded.
        A window of 100 published fastest here (8.5k/s; 1,000: 5.6k/s, 5,000: 1.9k/s).
        """
        templated = "{device_id}" in self.topic
        for line, device in zip(lines, devices, strict=True):
            while len(self.pending) >= IN_FLIGHT:
                self._settle(self.pending.popleft())
            topic = self.topic.replace("{device_id}", device) if templated else self.topic
            self.pending.append(self.client.publish(topic, line, qos=self.qos))
        while self.pending and self.pending[0].is_published():
            self.pending.popleft()

    def _settle(self, info: mqtt.MQTTMessageInfo) -> None:
        info.wait_for_publish(timeout=60)
        if not info.is_published():
            msg = f"the MQTT broker at {self.where} did not acknowledge every reading"
            raise SourceError(msg)

    def close(self) -> None:
        """Wait until every QoS 1 message is acknowledged, then disconnect."""
        try:
            while self.pending:
                self._settle(self.pending.popleft())
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def publisher_for(url: str) -> Publisher:
    """The publisher a ``--to`` address names."""
    scheme = urlsplit(url).scheme
    if scheme == "kafka":
        try:
            return KafkaPublisher(url)
        except KafkaException as error:
            msg = f"cannot create a Kafka producer for {url}: {error}"
            raise SourceError(msg) from None
    if scheme in ("mqtt", "mqtts"):
        return MqttPublisher(url)
    msg = f"{url!r}: --to takes kafka://HOST:PORT/TOPIC or mqtt://HOST:PORT/TOPIC"
    raise ConfigError(msg)


def publish_fleet(
    publisher: Publisher,
    *,
    devices: int,
    rate: float,
    readings: int | None = None,
    seconds: float | None = None,
    measurements: tuple[str, ...] = ("temperature", "humidity"),
    seed: int = 7,
    clock: Callable[[], float] = time.time,
    on_tick: Callable[[int], None] | None = None,
) -> Published:
    """Publish a fleet reporting ``rate`` readings a second in all, until a count or a time."""
    if readings is None and seconds is None:
        msg = "say how much to publish: a number of readings or a duration"
        raise ConfigError(msg)
    fleet = Fleet(devices, rate / devices, measurements, seed)
    layout = Layout(time_unit="ms")
    started = clock()
    low = int(started * 1e6)
    sent = 0
    for tick in itertools.count():
        now = clock()
        if seconds is not None and now - started >= seconds:
            break
        if readings is not None and sent >= readings:
            break
        # A publisher that falls behind catches up in bursts of at most BURST readings, so a
        # long wait (or a rate the broker cannot take) never schedules a backlog at once.
        high = min(int(now * 1e6), low + max(1, int(BURST * 1e6 / rate)))
        limit = None if readings is None else readings - sent
        schedule = fleet.schedule(low, high, limit)
        low = high
        if schedule.height:
            rows = payloads(fleet.readings(schedule, mix_seed(seed, tick)), layout, measurements)
            lines = json_lines(rows, layout).splitlines()
            publisher.send(lines, rows[layout.device_field].to_list())
            sent += len(lines)
            if on_tick is not None:
                on_tick(sent)
        time.sleep(max(0.0, TICK_S - (clock() - now)))
    publisher.close()
    return Published(sent, clock() - started, rate)
