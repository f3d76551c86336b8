"""Readings from an MQTT broker: made durable before they are acknowledged, read in order.

::

    source:
      type: mqtt
      url: mqtt://broker.local:1883
      topics: [devices/+/telemetry]
      qos: 1
      device_id_from_topic: devices/{device_id}/telemetry   # when a payload has no id
      username: pipeline
      password_env: MQTT_PASSWORD

paho's network thread receives the messages (:mod:`~sensorstream.sources.mqtt_intake`).
With ``durable: true`` (the default) each message is appended to an ingest log, the same
kind the HTTP source reads, kept beside the checkpoints, and a QoS 1 message is
acknowledged to the broker only once it is on disk; the pipeline reads that log from the
checkpointed sequence number, every message one line (its position), and a saved
checkpoint frees what it covers. With ``durable: false`` messages wait in memory, bounded,
acknowledged on receipt: a crash loses what was received since the last checkpoint.
:mod:`~sensorstream.sources.mqtt_messages` turns messages into readings.

The client id defaults to one derived from the pipeline and the stream
(:func:`~sensorstream.brokers.mqtt.settings.default_client_id`), stable across restarts, so the
persistent session (``clean_start: false``, kept ``session_expiry`` after a disconnect)
holds what the broker received while the pipeline was away.

A checkpoint records the log (as the HTTP source's) and the broker and topics. Only the
log decides whether a checkpoint fits: MQTT has no offsets to resume at, and the log holds
everything acknowledged. A changed broker or topic list is resumed, said in a warning, and
the topics no longer listed are unsubscribed from the persistent session.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ByteSize, Field, field_validator, model_validator

from sensorstream.brokers.mqtt.link import Link, Session
from sensorstream.brokers.mqtt.settings import Broker, MqttConnection, default_client_id
from sensorstream.brokers.mqtt.topics import TopicPattern, check_filter
from sensorstream.durations import Duration
from sensorstream.errors import SourceError
from sensorstream.readings import ReadingFormat
from sensorstream.sources.base import Clock, Identity, InputChange, SourceBatch
from sensorstream.sources.ingest_log import DEFAULT_MAX_UNCONSUMED_BYTES, IngestLog, Record
from sensorstream.sources.ingest_source import IDLE_WAIT_S, IngestLogSource
from sensorstream.sources.mqtt_intake import GROUP_DELAY_S, Intake, MessageQueue
from sensorstream.sources.mqtt_messages import Arrived, decode_messages

__all__ = ["MqttSource", "MqttSourceSettings"]

logger = logging.getLogger("sensorstream.brokers.mqtt")

DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_INFLIGHT = 1000


class MqttSource(IngestLogSource):
    """Messages of ``topics`` on ``broker``, through a durable log (or a queue); see the module.

    Args:
        broker: The broker to connect to.
        topics: Topic filters to subscribe to.
        qos: The QoS to subscribe with: 1 (at least once) or 0 (at most once).
        client_id: The MQTT client id; by default derived from the pipeline and stream.
        persistent: Keep the session across disconnects and restarts (``clean_start: false``).
        session_expiry: How long the broker keeps the session after a disconnect (MQTT 5).
        device_pattern: Where a topic names the device, for payloads that do not.
        durable: Append messages to the ingest log before acknowledging them.
        log_dir: The ingest log's folder; by default beside the checkpoints.
        max_unconsumed_bytes: The log's room for messages not yet checkpointed.
        max_queued_bytes: The room in memory between the network thread and the log (or the
            pipeline); when full, the network thread waits.
        max_inflight: QoS 1 messages the broker may send before one is acknowledged (MQTT 5).
        batch_bytes: About how many bytes of messages to decode into one batch.
        follow: Connect and wait for more; False reads the log as it is and ends, without
            connecting (a replay of what was received).
    """

    name = "mqtt"

    def __init__(
        self,
        broker: Broker,
        topics: Sequence[str],
        *,
        qos: Literal[0, 1] = 1,
        client_id: str | None = None,
        persistent: bool = True,
        session_expiry: timedelta = timedelta(days=1),
        device_pattern: TopicPattern | None = None,
        durable: bool = True,
        log_dir: str | Path | None = None,
        max_unconsumed_bytes: int = DEFAULT_MAX_UNCONSUMED_BYTES,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        follow: bool = True,
    ) -> None:
        super().__init__(
            log_dir=log_dir,
            max_unconsumed_bytes=max_unconsumed_bytes,
            follow=follow,
            batch_bytes=batch_bytes,
        )
        self.broker = broker
        self.topics = tuple(topics)
        self.qos = qos
        self.client_id = client_id
        self.session = Session(persistent, session_expiry if persistent else timedelta(0))
        self.device_pattern = device_pattern
        self.durable = durable
        self.max_queued_bytes = max_queued_bytes
        self.max_inflight = max_inflight
        self.intake: Intake | None = None
        self.subscribed = threading.Event()  # the broker acknowledged the subscriptions
        self._stale_topics: tuple[str, ...] = ()  # subscribed in an earlier run, no longer

    # -- the source contract ----------------------------------------------------------------
    def use_checkpoint_dir(self, folder: Path, stream: str) -> None:
        """The log beside the checkpoints, and a client id derived from them, unless given."""
        super().use_checkpoint_dir(folder, stream)
        if self.client_id is None:
            self.client_id = default_client_id(folder, stream)

    def prepare(self, fmt: ReadingFormat) -> None:
        """Open the log, when durable (and load the NDJSON scanner)."""
        if self.durable:
            super().prepare(fmt)

    def identity(self) -> Identity:
        """The broker and topics; when durable, the log too (which alone must match)."""
        where = {"url": self.broker.url, "topics": list(self.topics)}
        return {**super().identity(), **where} if self.durable else where

    def compare(self, recorded: Mapping[str, Any]) -> InputChange | None:
        """A durable source's log must be the checkpoint's; a new broker or topics resume."""
        before = [str(topic) for topic in recorded.get("topics", [])]
        self._stale_topics = tuple(topic for topic in before if topic not in self.topics)
        if (recorded.get("url"), before) != (self.broker.url, list(self.topics)):
            logger.warning(
                "mqtt source: the checkpoint was taken subscribed to %s at %s, now %s at %s: "
                "resuming the local log; what the old subscription left queued at the broker "
                "is not read",
                ", ".join(before) or "nothing",
                recorded.get("url"),
                ", ".join(self.topics),
                self.broker.url,
            )
        return super().compare(recorded) if self.durable else None

    def checkpointed(self, positions: Mapping[int, int]) -> None:
        """Free the log's room up to the checkpointed position (when durable)."""
        if self.durable:
            super().checkpointed(positions)

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        """Yield the messages after position ``resume_after[0]``, subscribing while it reads."""
        if self.durable:
            intake = self._start(self.log()) if self.follow else None
            try:
                yield from self.read_log(fmt, resume_after, clock)
            finally:
                self._stop(intake)
            return
        intake = self._start(None)
        position = resume_after.get(0, 0)  # nothing to resume: the queue holds what is new
        try:
            while True:
                self.check()
                if not intake.queue.wait_for_any(IDLE_WAIT_S):
                    yield None
                    continue
                time.sleep(GROUP_DELAY_S)  # a batch of a few milliseconds, not of one message
                taken = intake.queue.take(self.batch_bytes, 0)
                arrived = [
                    Arrived(position + i, m.topic, m.payload, taken[0].arrived_at)
                    for i, m in enumerate(taken)
                ]
                position += len(taken)
                yield decode_messages(arrived, fmt, self.device_pattern)
        finally:
            self._stop(intake)

    def decode(self, records: list[Record], fmt: ReadingFormat, start: int | None) -> SourceBatch:
        """Messages from the log: one record, one message, named by its topic."""
        del start  # a record is one line: a resumed read never begins inside one
        arrived = [
            Arrived(
                record.first, record.tag.decode(errors="replace"), record.body, record.arrived_at
            )
            for record in records
        ]
        return decode_messages(arrived, fmt, self.device_pattern)

    def check(self) -> None:
        """Raise :class:`~sensorstream.errors.SourceError` if the broker refused us, or the log."""
        intake = self.intake
        if intake is None:
            return
        failure = intake.link.failure or intake.failure
        if failure is not None:
            raise SourceError(failure)

    def close(self) -> None:
        """Disconnect, then close the log."""
        self._stop(self.intake)
        super().close()

    # -- plumbing ---------------------------------------------------------------------------
    def _start(self, log: IngestLog | None) -> Intake:
        if self.client_id is None:
            msg = (
                "the mqtt source needs a client id: set source.client_id (a pipeline run "
                "derives one from its checkpoint folder by default)"
            )
            raise SourceError(msg)
        link = Link(
            self.broker,
            self.client_id,
            role="mqtt source",
            session=self.session,
            manual_ack=self.durable,
            receive_maximum=self.max_inflight,
            max_packet_bytes=self.max_queued_bytes,
            on_connected=self._subscribe,
        )
        link.client.on_subscribe = self._subscribed
        self.intake = Intake(link, MessageQueue(self.max_queued_bytes), log)
        self.intake.start()
        return self.intake

    def _stop(self, intake: Intake | None) -> None:
        if intake is not None:
            intake.stop()
        if intake is self.intake:
            self.intake = None

    def _subscribe(self, client: paho.Client, session_present: bool) -> None:
        del session_present  # subscribe anyway: a changed list must apply, a kept one is kept
        self.subscribed.clear()
        if self._stale_topics:
            client.unsubscribe(list(self._stale_topics))
        if self.broker.protocol == "5":
            client.subscribe([(topic, SubscribeOptions(qos=self.qos)) for topic in self.topics])
        else:
            client.subscribe([(topic, int(self.qos)) for topic in self.topics])

    def _subscribed(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[Any], properties: Any
    ) -> None:
        del userdata, mid, properties
        refused = False
        for topic, code in zip(self.topics, codes, strict=False):
            value = getattr(code, "value", code)
            if value >= 0x80 and self.intake is not None:
                message = (
                    f"the MQTT broker at {self.intake.link.where} refused the subscription to "
                    f"{topic!r} ({code}): check the broker's access rules for this user"
                )
                self.intake.link.failure = message
                client.disconnect()
                refused = True
            elif value < self.qos:
                logger.warning(
                    "mqtt source: the broker granted QoS %d for %r, not %d: messages may be lost",
                    value,
                    topic,
                    self.qos,
                )
        if not refused:
            self.subscribed.set()


class MqttSourceSettings(MqttConnection):
    """An :class:`MqttSource` as written under ``source:`` in a pipeline YAML (see the module).

    >>> MqttSourceSettings(url="mqtt://localhost", topics=["devices/+/telemetry"]).qos
    1
    """

    type: Literal["mqtt"] = "mqtt"
    topics: list[str] = Field(min_length=1)
    qos: Literal[0, 1] = 1
    clean_start: bool = False
    session_expiry: Duration = Field(default="1d", validate_default=True)
    device_id_from_topic: str | None = None
    durable: bool = True
    log_dir: Path | None = None
    max_unconsumed_bytes: ByteSize = Field(default=ByteSize(DEFAULT_MAX_UNCONSUMED_BYTES), gt=0)
    max_queued_bytes: ByteSize = Field(default=ByteSize(DEFAULT_MAX_QUEUED_BYTES), gt=0)
    max_inflight: int = Field(default=DEFAULT_MAX_INFLIGHT, ge=1, le=65535)
    batch_bytes: ByteSize = Field(default=ByteSize(DEFAULT_BATCH_BYTES), gt=0)
    follow: bool = True

    @field_validator("topics")
    @classmethod
    def _filters(cls, topics: list[str]) -> list[str]:
        for topic in topics:
            check_filter(topic)
        if len(set(topics)) != len(topics):
            msg = "topics lists a filter twice"
            raise ValueError(msg)
        return topics

    @field_validator("device_id_from_topic")
    @classmethod
    def _pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            TopicPattern.parse(pattern)
        return pattern

    @model_validator(mode="after")
    def _room(self) -> MqttSourceSettings:
        if not timedelta(0) <= self.session_expiry <= timedelta(seconds=0xFFFFFFFE):
            msg = "session_expiry must lie between 0s and about 136 years"
            raise ValueError(msg)
        if self.durable and self.max_unconsumed_bytes < 2 * self.max_queued_bytes:
            msg = (
                f"max_unconsumed_bytes ({self.max_unconsumed_bytes}) must be at least twice "
                f"max_queued_bytes ({self.max_queued_bytes}), so the log always has room for "
                "what the queue holds"
            )
            raise ValueError(msg)
        if not self.follow and not self.durable:
            msg = "follow: false reads the ingest log, which only a durable source keeps"
            raise ValueError(msg)
        return self

    def build(self) -> MqttSource:
        """The source these settings describe; the password is read from the environment now."""
        return MqttSource(
            self.broker(),
            self.topics,
            qos=self.qos,
            client_id=self.client_id,
            persistent=not self.clean_start,
            session_expiry=self.session_expiry,
            device_pattern=TopicPattern.parse(self.device_id_from_topic)
            if self.device_id_from_topic
            else None,
            durable=self.durable,
            log_dir=self.log_dir,
            max_unconsumed_bytes=int(self.max_unconsumed_bytes),
            max_queued_bytes=int(self.max_queued_bytes),
            max_inflight=self.max_inflight,
            batch_bytes=int(self.batch_bytes),
            follow=self.follow,
        )
