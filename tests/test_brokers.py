"""The real brokers themselves: Mosquitto's three listeners and its persistence, Kafka's topics.

These are the promises the MQTT and Kafka sources are built on: if one of these fails, the
broker scripts (scripts/mosquitto.sh, scripts/kafka.sh) are at fault, not the sources.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, Producer
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.brokers import KafkaBroker, MqttBroker

pytestmark = pytest.mark.integration

# Each wait is a few milliseconds on loopback; the margin is for a loaded CI machine.
TIMEOUT_S = 15


@dataclass
class MqttConnection:
    """A paho client on its own network thread, with what the broker sent it as queues."""

    client: mqtt.Client
    connacks: queue.Queue[tuple[ReasonCode, bool]] = field(default_factory=queue.Queue)
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[ReasonCode]] = field(default_factory=queue.Queue)

    def connack(self) -> tuple[ReasonCode, bool]:
        """Return the broker's answer to the connection: its reason code and session present."""
        return self.connacks.get(timeout=TIMEOUT_S)

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait until the broker granted it."""
        self.client.subscribe(topic, qos=1)
        granted = self.subacks.get(timeout=TIMEOUT_S)
        assert [code.value for code in granted] == [1]

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait until the broker acknowledged it."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=TIMEOUT_S)

    def next_message(self) -> mqtt.MQTTMessage:
        """Return the next message the broker delivered (waiting for it)."""
        return self.messages.get(timeout=TIMEOUT_S)


@contextmanager
def mqtt_connection(
    port: int,
    *,
    client_id: str = "",
    clean_session: bool = True,
    credentials: tuple[str, str] | None = None,
    ca_file: Path | None = None,
) -> Iterator[MqttConnection]:
    """Connect an MQTT 3.1.1 client to 127.0.0.1:PORT; disconnect it afterwards."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    connection = MqttConnection(client)

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, code: ReasonCode, _: Any
    ) -> None:
        connection.connacks.put((code, flags.session_present))

    def on_subscribe(
        client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], _: Any
    ) -> None:
        connection.subacks.put(codes)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        connection.messages.put(message)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    if credentials is not None:
        client.username_pw_set(*credentials)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        yield connection
    finally:
        client.disconnect()
        client.loop_stop()


def connected(connection: MqttConnection) -> MqttConnection:
    """Return the connection once the broker accepted it; fail with its reason if it refused."""
    code, _ = connection.connack()
    assert not code.is_failure, f"the broker refused the connection: {code}"
    return connection


def new_topic() -> str:
    return f"sensorstream-test/{uuid.uuid4().hex}"


def test_a_qos1_message_goes_through_the_anonymous_listener(mosquitto: MqttBroker) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    topic = new_topic()
    with mqtt_connection(mosquitto.port) as subscriber, mqtt_connection(mosquitto.port) as sender:
        connected(subscriber).subscribe(topic)
        connected(sender).publish(topic, b'{"sensor": "t-1", "value": 21.5}')
        message = subscriber.next_message()
    assert (message.topic, message.payload, message.qos) == (
        topic,
        b'{"sensor": "t-1", "value": 21.5}',
        1,
    )


def test_the_auth_listener_refuses_a_wrong_password_and_takes_the_right_one(
    mosquitto: MqttBroker,
) -> None:
    wrong = (mosquitto.username, "not-the-password")
    with mqtt_connection(mosquitto.auth_port, credentials=wrong) as refused:
        code, _ = refused.connack()
    assert code.is_failure
    assert code.getName() in {"Bad user name or password", "Not authorized"}
    with mqtt_connection(mosquitto.auth_port) as anonymous:
        code, _ = anonymous.connack()
    assert code.is_failure
    right = (mosquitto.username, mosquitto.password)
    topic = new_topic()
    with mqtt_connection(mosquitto.auth_port, credentials=right) as accepted:
        connected(accepted).subscribe(topic)
        accepted.publish(topic, b"hello")
        assert accepted.next_message().payload == b"hello"


def test_the_tls_listener_serves_a_certificate_the_ca_file_signed(mosquitto: MqttBroker) -> None:
    assert mosquitto.ca_file.is_file()
    topic = new_topic()
    with mqtt_connection(mosquitto.tls_port, ca_file=mosquitto.ca_file) as secure:
        connected(secure).subscribe(topic)
        secure.publish(topic, b"over tls")
        assert secure.next_message().payload == b"over tls"


def test_a_persistent_session_gets_what_was_published_while_away_even_across_a_restart(
    mosquitto: MqttBroker,
) -> None:
    topic, client_id = new_topic(), f"sensorstream-test-{uuid.uuid4().hex[:12]}"

    def persistent() -> AbstractContextManager[MqttConnection]:
        return mqtt_connection(mosquitto.port, client_id=client_id, clean_session=False)

    def resumed(device: MqttConnection) -> MqttConnection:
        code, session_present = device.connack()
        assert not code.is_failure, f"the broker refused the connection: {code}"
        assert session_present, "the broker forgot the session"
        return device

    def publish(payload: bytes) -> None:
        with mqtt_connection(mosquitto.port) as sender:
            connected(sender).publish(topic, payload)

    with persistent() as device:
        connected(device).subscribe(topic)
    publish(b"while away")
    with persistent() as device:
        assert resumed(device).next_message().payload == b"while away"
    publish(b"before the restart")
    mosquitto.restart()
    with persistent() as device:
        message = resumed(device).next_message()
    assert (message.payload, message.qos) == (b"before the restart", 1)


def consume(consumer: Consumer, count: int) -> list[tuple[bytes, bytes, int]]:
    """Return ``count`` messages as (key, value, partition), failing after TIMEOUT_S without one."""
    received: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(received) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        key, value = message.key(), message.value()
        assert isinstance(key, bytes)
        assert isinstance(value, bytes)
        received.append((key, value, message.partition() or 0))
        deadline = time.monotonic() + TIMEOUT_S
    assert len(received) == count, f"got {len(received)} of {count} messages"
    return received


def group_consumer(kafka: KafkaBroker, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    return consumer


def test_a_consumer_group_reads_every_keyed_message_of_a_three_partition_topic(
    kafka: KafkaBroker,
) -> None:
    topic = kafka.create_topic("readings", partitions=3)
    assert topic.startswith("readings-")
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    sent = [(f"sensor-{n % 10}".encode(), f"reading-{n}".encode()) for n in range(100)]
    for key, value in sent:
        producer.produce(topic, value, key)
    assert producer.flush(TIMEOUT_S) == 0
    consumer = group_consumer(kafka, topic)
    try:
        received = consume(consumer, 100)
    finally:
        consumer.close()
    assert sorted((key, value) for key, value, _ in received) == sorted(sent)
    partitions_by_key: dict[bytes, set[int]] = {}
    for key, _, partition in received:
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_by_key.values())
    assert {partition for _, _, partition in received} == {0, 1, 2}


def test_a_message_produced_before_a_restart_is_consumed_after_it(kafka: KafkaBroker) -> None:
    topic = kafka.create_topic()
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topic, b"kept", b"sensor-1")
    assert producer.flush(TIMEOUT_S) == 0
    del producer
    kafka.restart()
    consumer = group_consumer(kafka, topic)
    try:
        assert consume(consumer, 1) == [(b"sensor-1", b"kept", 0)]
    finally:
        consumer.close()
