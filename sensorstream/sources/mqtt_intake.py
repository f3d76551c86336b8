"""Taking MQTT messages off paho's network thread: a bounded queue, and the durable writer.

paho calls :meth:`Intake.on_message` in its network thread for every message. The message
goes into a :class:`MessageQueue` bounded in bytes; while the queue is full the call waits,
so paho stops reading the socket, TCP pushes back on the broker, and the broker queues for
the persistent session: memory stays bounded whatever the broker sends. (MQTT 5 also
caps the QoS 1 messages in flight unacknowledged: ``max_inflight``, the Receive Maximum.)

**Durable** (the default): a writer thread takes what the queue gathered in a few
milliseconds (:data:`GROUP_DELAY_S` after the first message), appends it to the ingest log
as one group (one write, one fsync, every message a tagged record named by
its topic), and only then acknowledges the group's QoS 1 messages (paho's
``manual_ack``). A message is acknowledged only once it is on disk; a crash before that
leaves it unacknowledged, and the broker sends it again. While the log is full of what the
pipeline has not checkpointed, the writer waits, and the queue fills behind it.

Not durable: the pipeline reads the queue itself, and paho acknowledges each message as
soon as it is queued.

An acknowledgement belongs to the connection the message came on: after a reconnect the
broker sends unacknowledged messages again, under packet ids that a new message may reuse,
so the writer acknowledges only messages of the current connection
(:attr:`~sensorstream.brokers.mqtt.link.Link.generation`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho

from sensorstream.brokers.mqtt.link import Link
from sensorstream.sources.ingest_log import Backpressure, IngestLog, IngestLogError

__all__ = ["Intake", "Message", "MessageQueue"]


# What a message costs in the queue beyond its payload and topic (the objects around them).
_OVERHEAD_BYTES = 200
_POLL_S = 0.05  # how often a waiting call looks whether it should stop
# At most what the writer appends at once (and never more than half the log's room, so the
# room always takes a group): big enough to share a sync widely.
MAX_GROUP_BYTES = 1024 * 1024
# How long the writer lets a group gather after its first message: the latency it adds,
# for syncs (and the pipeline's decoding) shared by every message of a few milliseconds.
GROUP_DELAY_S = 0.005


@dataclass(frozen=True)
class Message:
    """A message as received: topic, payload, packet id, QoS, connection, arrival."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    arrived_at: datetime

    @property
    def size(self) -> int:
        """What it costs in the queue, in bytes."""
        return len(self.payload) + len(self.topic) + _OVERHEAD_BYTES


class MessageQueue:
    """Messages in arrival order, bounded by their bytes: :meth:`put` waits while it is full.

    An empty queue takes any one message, so that one larger than the bound still passes.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self.peak_bytes = 0  # the most it held: never much above max_bytes
        self.waits = 0  # how often a put had to wait for room: back-pressure at work
        self._messages: deque[Message] = deque()
        self._changed = threading.Condition()
        self._stopped = False

    def put(self, message: Message) -> bool:
        """Queue ``message``, waiting for room; False if the queue was stopped meanwhile."""
        with self._changed:
            waited = False
            while self._messages and self.held_bytes + message.size > self.max_bytes:
                if self._stopped:
                    return False
                waited = True
                self._changed.wait(_POLL_S)
            self.waits += waited
            if self._stopped:
                return False
            self._messages.append(message)
            self.held_bytes += message.size
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
            self._changed.notify_all()
            return True

    def take(self, max_bytes: int, timeout: float) -> list[Message]:
        """The oldest messages, about ``max_bytes`` of them (at least one, if any come in time)."""
        with self._changed:
            if not self._messages:
                self._changed.wait(timeout)
            taken: list[Message] = []
            size = 0
            while self._messages and (not taken or size + self._messages[0].size <= max_bytes):
                message = self._messages.popleft()
                taken.append(message)
                size += message.size
            self.held_bytes -= size
            if taken:
                self._changed.notify_all()
            return taken

    def wait_for_any(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a message; True if one is there."""
        with self._changed:
            return self._changed.wait_for(lambda: bool(self._messages), timeout)

    def stop(self) -> None:
        """Refuse further messages, and wake every waiting put."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._messages)


class Intake:
    """Receives a link's messages into a queue and, with a log, writes and acknowledges them."""

    def __init__(self, link: Link, queue: MessageQueue, log: IngestLog | None) -> None:
        self.link = link
        self.queue = queue
        self.log = log
        room = log.max_unconsumed_bytes // 2 if log is not None else MAX_GROUP_BYTES
        self.group_bytes = min(MAX_GROUP_BYTES, room)
        self.failure: str | None = None  # the writer stopped: what went wrong
        self.written = 0  # messages appended to the log
        self.acknowledged = 0  # QoS 1 messages acknowledged after their append
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        link.client.on_message = self.on_message

    def start(self) -> None:
        """Start the writer (with a log), then the link's connection."""
        if self.log is not None:
            self._writer = threading.Thread(target=self._write, name="mqtt-writer", daemon=True)
            self._writer.start()
        self.link.start()

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """Queue a message (paho's callback), waiting while the queue is full."""
        del client, userdata
        received = Message(
            message.topic,
            bytes(message.payload),
            message.mid,
            message.qos,
            self.link.generation,
            datetime.now(UTC),
        )
        # Refused only when stopping: never acknowledged, so the broker sends it again.
        self.queue.put(received)

    def _write(self) -> None:
        assert self.log is not None
        while not self._stopping.is_set() or len(self.queue):
            if not self.queue.wait_for_any(_POLL_S):
                continue
            if not self._stopping.is_set():
                time.sleep(GROUP_DELAY_S)  # let a group gather: fewer syncs, fewer decodes
            group = self.queue.take(self.group_bytes, 0)
            if group and not self._append(group):
                return
            if group:
                self._acknowledge(group)

    def _append(self, group: list[Message]) -> bool:
        """Append the group to the log, waiting while the log is full; False to give up."""
        assert self.log is not None
        entries = [(message.topic.encode(), message.payload) for message in group]
        while True:
            try:
                self.log.append_tagged(entries, group[0].arrived_at)
            except Backpressure:
                if self._stopping.is_set():
                    return False  # unacknowledged: the broker keeps them for the next run
                time.sleep(_POLL_S)
                continue
            except IngestLogError as error:
                self.failure = f"cannot write the MQTT messages to the ingest log: {error}"
                self.queue.stop()
                return False
            self.written += len(group)
            return True

    def _acknowledge(self, group: list[Message]) -> None:
        with self.link.lock:  # no reconnect between the check and the acknowledgement
            for message in group:
                if message.qos == 1 and message.generation == self.link.generation:
                    self.link.client.ack(message.mid, message.qos)
                    self.acknowledged += 1

    def stop(self) -> None:
        """Write what is queued, disconnect, and stop the writer.

        Messages written after the disconnect stay unacknowledged: the broker sends them
        again next time, and the pipeline's deduplication drops the repeats.
        """
        self._stopping.set()
        if self._writer is not None:
            deadline = time.monotonic() + 5
            while len(self.queue) and self._writer.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        self.queue.stop()  # a network thread waiting for room gives up the message
        self.link.stop()
        if self._writer is not None:
            self._writer.join()
            self._writer = None
