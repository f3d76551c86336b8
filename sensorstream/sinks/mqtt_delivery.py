"""Publishing over a paho link in order, and knowing when the broker has everything.

Order matters: with ``retain``, the broker keeps the *last* message it got per topic, so a
result overtaken by an older one would stay wrong on every dashboard. paho alone reorders
around a (re)connection: a message published while disconnected waits in paho and is sent
after the CONNACK, while one published just after the CONNACK goes out at once, ahead of
it; and after a reconnect paho resends the unacknowledged messages, which new ones could
overtake too. So a :class:`Publisher` hands paho a message only while the link is up *and*
nothing from an earlier connection awaits its acknowledgement; until then messages wait in
its own queue, in order, and are handed over by whichever thread next publishes or waits.

A message is *pending* from the moment it is queued until the broker acknowledges it (QoS
1: PUBACK; QoS 0: written to the socket). :meth:`Publisher.wait` waits for a condition on
them, up to a timeout, raising :class:`~sensorstream.errors.SinkError` with what it waited
for; at most ``max_pending`` are pending at once (a publish past it waits).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS, Client

from sensorstream.brokers.mqtt.link import Link
from sensorstream.errors import SinkError

__all__ = ["Publisher"]

_POLL_S = 0.05


class Publisher:
    """Ordered, acknowledged publishing over ``link``; see the module."""

    def __init__(self, link: Link, *, qos: int, timeout: timedelta, max_pending: int) -> None:
        self.link = link
        self.qos = qos
        self.timeout = timeout
        self.max_pending = max_pending
        self.published = 0  # messages queued so far: the numbers of the pending ones
        self._queue: deque[tuple[int, str, bytes, bool]] = deque()  # not yet handed to paho
        self._sent: dict[int, tuple[int, int]] = {}  # packet id -> (number, link generation)
        self._early: set[int] = set()  # packet ids acknowledged before publish() returned
        self._sending = threading.Lock()  # one thread at a time hands messages to paho
        self._changed = threading.Condition()  # guards _sent and _early; notified on an ack
        link.client.on_publish = self._acknowledged
        link.on_connected = lambda client, session_present: self._hand_over(blocking=False)

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """Queue a message and hand over what may go; waits while ``max_pending`` are pending."""
        if self.pending() >= self.max_pending:
            self.wait(lambda: self.pending() < self.max_pending, "a publish")
        self.published += 1
        with self._changed:
            self._queue.append((self.published, topic, payload, retain))
        self._hand_over()

    def pending(self) -> int:
        """Messages queued and not yet acknowledged."""
        with self._changed:
            return len(self._queue) + len(self._sent)

    def oldest_pending(self) -> float:
        """The number of the oldest message not yet acknowledged (infinity if none)."""
        with self._changed:
            waiting = [number for number, _ in self._sent.values()]
            if self._queue:
                waiting.append(self._queue[0][0])
        return min(waiting, default=float("inf"))

    def wait(self, done: Callable[[], bool], what: str) -> None:
        """Hand over messages until ``done()``; SinkError after ``timeout`` or a refusal."""
        deadline = time.monotonic() + self.timeout.total_seconds()
        while True:
            self._hand_over()
            if done():
                return
            if self.link.failure is not None:
                raise SinkError(self.link.failure)
            if time.monotonic() >= deadline:
                state = "connected" if self.link.connected.is_set() else "not connected"
                msg = (
                    f"the mqtt sink's {what} waited {self.timeout.total_seconds():g} s for "
                    f"{self.pending()} messages to be acknowledged by {self.link.where} "
                    f"({state}): is the broker up? (flush_timeout sets the wait)"
                )
                raise SinkError(msg)
            with self._changed:
                self._changed.wait(_POLL_S)

    def _hand_over(self, *, blocking: bool = True) -> None:
        """Give paho the queued messages, in order, while nothing older is in the way.

        Not ``blocking``: only if no other thread is at it (paho's, on connecting).
        """
        if not self._sending.acquire(blocking=blocking):
            return
        try:
            while self._queue and self._ready():
                number, topic, payload, retain = self._queue[0]
                generation = self.link.generation
                info = self.link.client.publish(topic, payload, qos=self.qos, retain=retain)
                if info.rc == MQTT_ERR_NO_CONN and self.qos == 0:
                    return  # the link dropped just now: it stays queued for the next one
                if info.rc not in (MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN):
                    msg = (
                        f"the mqtt sink cannot publish to {topic!r} at {self.link.where}: {info.rc}"
                    )
                    raise SinkError(msg)
                with self._changed:
                    self._queue.popleft()
                    if info.mid in self._early:
                        self._early.discard(info.mid)
                        self._changed.notify_all()
                    else:  # QoS 1 under NO_CONN: paho keeps it and resends it after the CONNACK
                        self._sent[info.mid] = (number, generation)
        finally:
            self._sending.release()

    def _ready(self) -> bool:
        """Connected, and every message sent on an earlier connection acknowledged."""
        if not self.link.connected.is_set():
            return False
        generation = self.link.generation
        with self._changed:
            return all(sent_on == generation for _, sent_on in self._sent.values())

    def _acknowledged(
        self, client: Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        """Note that the broker has a message (paho's on_publish, in its network thread)."""
        del client, userdata, reason, properties
        with self._changed:
            if self._sent.pop(mid, None) is None:
                self._early.add(mid)
            self._changed.notify_all()
