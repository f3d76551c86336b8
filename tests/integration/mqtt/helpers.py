"""What the MQTT integration tests share: a publisher, a subscriber, a pipeline in a thread."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensorstream.runtime.counters import RunSummary
from sensorstream.runtime.runner import Runner
from tests.brokers import MqttBroker

TIMEOUT_S = 30.0


def unique(prefix: str) -> str:
    """A topic prefix of this test alone: the broker is shared by every test."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(done: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    """Wait until ``done()``; fail saying ``what`` did not happen in time."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.02)


def client(broker: MqttBroker, port: int | None = None, **login: str) -> paho.Client:
    """A connected paho client of the broker, its network thread running."""
    made = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    if login:
        made.username_pw_set(login["username"], login["password"])
    made.connect(broker.host, port or broker.port)
    made.loop_start()
    return made


def publish(broker: MqttBroker, messages: Sequence[tuple[str, bytes]], qos: int = 1) -> None:
    """Publish ``messages`` (topic, payload) and return once the broker has every one."""
    publisher = client(broker)
    try:
        infos = [publisher.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(TIMEOUT_S)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        publisher._reset_sockets()  # not left to the garbage collector: a ResourceWarning


@dataclass
class Received:
    """A message a subscriber got."""

    topic: str
    payload: bytes
    retain: bool


@dataclass
class Subscriber:
    """Collects what arrives on ``topic_filter`` (retained messages first)."""

    broker: MqttBroker
    topic_filter: str
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def listening(self) -> Iterator[Subscriber]:
        subscribed = threading.Event()
        made = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)

        def on_message(_: paho.Client, __: Any, message: paho.MQTTMessage) -> None:
            with self._lock:
                self.messages.append(
                    Received(message.topic, bytes(message.payload), message.retain)
                )

        made.on_message = on_message
        made.on_subscribe = lambda *_: subscribed.set()
        made.connect(self.broker.host, self.broker.port)
        made.loop_start()
        made.subscribe(self.topic_filter, qos=1)
        assert subscribed.wait(TIMEOUT_S), "the subscription was never acknowledged"
        try:
            yield self
        finally:
            made.disconnect()
            made.loop_stop()
            made._reset_sockets()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def settled(self, quiet_s: float = 0.5) -> list[Received]:
        """What arrived, once nothing more has for ``quiet_s``."""
        count, since = -1, time.monotonic()
        while time.monotonic() - since < quiet_s:
            time.sleep(0.05)
            now = len(self.received())
            if now != count:
                count, since = now, time.monotonic()
        return self.received()


@dataclass
class Running:
    """A pipeline running in a thread: its runner, and how its run ended."""

    runner: Runner
    thread: threading.Thread
    summary: RunSummary | None = None
    error: BaseException | None = None

    def alive(self) -> bool:
        return self.thread.is_alive()


@contextmanager
def running(runner: Runner) -> Iterator[Running]:
    """Run ``runner`` in a thread; on leaving, stop it and wait for it."""
    state = Running(runner, threading.Thread(target=lambda: _run(state), daemon=True))
    state.thread.start()
    try:
        yield state
    finally:
        runner.stop()
        state.thread.join(TIMEOUT_S)
        assert not state.thread.is_alive(), "the pipeline did not stop"


def _run(state: Running) -> None:
    try:
        state.summary = state.runner.run()
    except BaseException as error:  # handed to the test
        state.error = error


def checkpoint_dir(folder: Path) -> Path:
    return folder / ".sensorstream" / "mqtt-test"
