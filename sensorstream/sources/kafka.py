"""Readings from a Kafka topic, read by a consumer group (confluent-kafka, librdkafka inside).

Each message's value is one JSON reading (keyed by device id by whoever produced it, so a
device's readings stay in one partition and in order). Messages are decoded per partition
in batches of up to ``batch_messages``, through the same decoder as every other source;
a message that is no valid reading becomes a dead letter whose ``origin`` names its topic,
partition and offset. An empty message (a tombstone) counts as a blank line.

**Positions and delivery.** A partition's position is the next offset to read. The
pipeline's checkpoint is the source of truth: on assignment the runner restores the
partition's unit and the consumer seeks to its position (a partition without one starts at
``start``: the earliest retained offset by default, the end, or the first message produced
at or after a given moment). Offsets are committed to the group
only after a checkpoint holding them is saved, so the committed offset never runs ahead
of what is durable in the store (it shows the group's lag to Kafka's tools). Delivery is
at least once (a crash replays from the checkpoint) and the sinks' writes are idempotent,
so every result is stored once.

**Rebalances.** The consumer uses the range assignor, so partition ``n`` of co-partitioned
topics lands on one worker. On revocation the runner checkpoints the partitions (state,
positions, counters) before the consumer gives them up; on assignment it restores them.

**Until the end.** Kafka has no end of stream; with ``until_end`` the source captures each
partition's end offset when it starts and ends once every partition reached it, so a
replay of a topic runs to completion (and closes its windows) like a file does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Mapping
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

import polars as pl
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sensorstream.brokers.kafka import KafkaConnection, offsets_at
from sensorstream.durations import Duration
from sensorstream.errors import ConfigError, SourceError
from sensorstream.readings import ReadingFormat, decode_json_lines, empty_dead_letters
from sensorstream.sources.base import (
    Clock,
    Identity,
    PartitionListener,
    Source,
    SourceBatch,
)

logger = logging.getLogger("sensorstream.kafka")

_LINE = re.compile(r"^line (\d+) of ")
_METADATA_TIMEOUT_S = 10.0

# Where a partition without a checkpoint starts: its earliest retained offset, its end, or
# the first message produced at or after a moment (what an earlier run left is skipped).
Start: TypeAlias = Literal["earliest", "latest"] | datetime


class KafkaSource(Source):
    """Reads one topic's partitions as a member of a consumer group; see the module."""

    name = "kafka"
    dynamic = True

    def __init__(
        self,
        topic: str,
        *,
        connection: KafkaConnection | None = None,
        group: str = "sensorstream",
        start: Start = "earliest",
        until_end: bool = False,
        batch_messages: int = 20_000,
        poll_timeout_s: float = 0.1,
    ) -> None:
        self.topic = topic
        self.connection = connection or KafkaConnection()
        if isinstance(start, datetime) and start.utcoffset() is None:
            msg = f"start must have a time zone (e.g. 2026-12-03T10:00:00Z), got {start}"
            raise ConfigError(msg)
        self.group = group
        self.start = start
        self.until_end = until_end
        self.batch_messages = batch_messages
        self.poll_timeout_s = poll_timeout_s
        self._listener: PartitionListener | None = None
        self._consumer: Consumer | None = None
        self._assigned: set[int] = set()
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._end: dict[int, int] | None = None  # partition -> end offset captured at start
        self._closing = False
        self._partitions: list[int] | None = None

    # -- what the runner asks -------------------------------------------------------------
    def partitions(self) -> list[int]:
        """Every partition of the topic (the group decides which are read here)."""
        if self._partitions is None:
            consumer = self._new_consumer()
            try:
                self._partitions = sorted(self._metadata(consumer))
            finally:
                consumer.close()
        return self._partitions

    def listen(self, listener: PartitionListener) -> None:
        """The runner's ear for assignments and revocations."""
        self._listener = listener

    def identity(self) -> Identity:
        """The cluster and topic read: a checkpoint of another topic's offsets is refused."""
        return {"kafka": self.connection.bootstrap, "topic": self.topic}

    def checkpointed(self, positions: Mapping[int, int]) -> None:
        """Commit the checkpointed offsets to the group (what its lag is measured against).

        While reading, only the partitions still held (one revoked meanwhile is another
        member's now); after the read ended (``until_end``, or a stop) the group has
        left, and a consumer of its own commits the run's last positions.
        """
        consumer = self._consumer
        if consumer is not None:
            held = {p: o for p, o in positions.items() if p in self._assigned}
            self._commit(consumer, held)
            return
        if positions:
            standalone = self._new_consumer()
            try:
                self._commit(standalone, positions)
            finally:
                standalone.close()

    def _commit(self, consumer: Consumer, positions: Mapping[int, int]) -> None:
        offsets = [TopicPartition(self.topic, p, o) for p, o in positions.items()]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:  # the checkpoint holds them: a later commit catches up
            logger.warning("kafka: committing offsets of %s failed: %s", self.topic, error)

    # -- reading --------------------------------------------------------------------------
    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        """Yield each partition's messages as it is assigned; see the module.

        ``resume_after`` is unused: positions come from the runner on each assignment.
        """
        del resume_after
        consumer = self._consumer = self._new_consumer()
        try:
            yield from self._consume(consumer, fmt, clock)
        finally:  # also when the runner stops reading: leave the group now
            self._leave()

    def _consume(
        self, consumer: Consumer, fmt: ReadingFormat, clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        if self.until_end:
            self._end = self._end_offsets(consumer)
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        while True:
            if self._end is not None and self._at_end():
                return
            messages = self._poll(consumer)
            by_partition: dict[int, list[Message]] = {}
            for message in messages:
                error = message.error()
                if error is not None:
                    self._problem(error)
                    continue
                partition = message.partition()
                if partition is not None and partition in self._assigned:
                    by_partition.setdefault(partition, []).append(message)
            if not by_partition:
                yield None
                continue
            arrived = clock()
            for partition, batch in sorted(by_partition.items()):
                yield self._batch(partition, batch, fmt, arrived)

    def _poll(self, consumer: Consumer) -> list[Message]:
        """What librdkafka holds now, up to a batch; or wait for the next message.

        Never waiting for a batch to fill keeps latency to the pipeline's own pace: under
        load the batches grow by themselves (the more a loop takes, the more is queued).
        """
        messages = consumer.consume(self.batch_messages, 0)
        if messages:
            return messages
        first = consumer.poll(self.poll_timeout_s)
        if first is None:
            return []
        return [first, *consumer.consume(self.batch_messages - 1, 0)]

    def _batch(
        self, partition: int, messages: list[Message], fmt: ReadingFormat, arrived: datetime
    ) -> SourceBatch:
        offsets = [m.offset() or 0 for m in messages]
        # One line per message: a newline inside a value becomes CR, which JSON reads as
        # white space where it is allowed and refuses inside a string, as it would the newline.
        chunk = b"".join((m.value() or b"").replace(b"\n", b"\r") + b"\n" for m in messages)
        decoded = decode_json_lines(chunk, fmt, arrived_at=arrived, origin="kafka", first_line=0)
        dead = decoded.dead_letters
        if dead.height:
            dead = dead.with_columns(pl.Series("origin", self._origins(dead, partition, offsets)))
        position = offsets[-1] + 1
        self._next[partition] = position
        created = [ts for m in messages if (ts := m.timestamp())[0] != 0]
        return SourceBatch(
            partition=partition,
            position=position,
            readings=decoded.readings,
            dead_letters=dead if dead.height else empty_dead_letters(),
            payloads=decoded.payloads,
            blank=decoded.blank,
            arrived_us=min(ms for _, ms in created) * 1000 if created else None,
        )

    def _origins(self, dead: pl.DataFrame, partition: int, offsets: list[int]) -> list[str]:
        """Each dead letter's topic, partition and offset, from its line in the batch."""
        named = []
        for origin in dead["origin"].to_list():
            found = _LINE.match(origin or "")
            offset = offsets[int(found.group(1))] if found else None
            where = f"offset {offset}" if offset is not None else origin
            named.append(f"topic {self.topic} partition {partition} {where}")
        return named

    # -- the group's callbacks (they run inside consume(), in the runner's thread) ---------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        resume = dict(self._listener.assigned(numbers)) if self._listener is not None else {}
        starts = self._starts(consumer, [n for n in numbers if n not in resume])
        for tp in partitions:
            tp.offset = resume.get(tp.partition, starts.get(tp.partition, OFFSET_BEGINNING))
            if tp.partition in resume:
                self._next[tp.partition] = resume[tp.partition]
        self._assigned |= set(numbers)
        consumer.assign(partitions)
        logger.info("kafka: %s assigned partitions %s", self.topic, numbers)

    def _starts(self, consumer: Consumer, numbers: list[int]) -> dict[int, int]:
        """Where each partition without a checkpoint starts, as ``start`` says."""
        if isinstance(self.start, datetime):
            return offsets_at(consumer, self.topic, numbers, self.start)
        return dict.fromkeys(numbers, OFFSET_BEGINNING if self.start == "earliest" else OFFSET_END)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions if tp.partition in self._assigned]
        if self._listener is not None and not self._closing and numbers:
            self._listener.revoked(numbers)  # checkpointed, and committed, before they go
        self._assigned -= set(numbers)
        for number in numbers:
            self._next.pop(number, None)
        consumer.unassign()
        logger.info("kafka: %s revoked partitions %s", self.topic, numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not handed over: another member may already read them. The checkpoint kept
        # locally is still right for this worker; committing may fail, which is harmless.
        self._on_revoke(consumer, partitions)

    # -- helpers ---------------------------------------------------------------------------
    def _new_consumer(self) -> Consumer:
        """A consumer of the group, not yet subscribed."""
        settings = self.connection.client(
            **{
                "group.id": self.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": self.start if isinstance(self.start, str) else "earliest",
                "partition.assignment.strategy": "range",
                "client.id": f"sensorstream-{self.group}",
            }
        )
        try:
            return Consumer(settings)
        except KafkaException as error:
            msg = f"cannot create a Kafka consumer for {self.connection.bootstrap}: {error}"
            raise SourceError(msg) from None

    def _metadata(self, consumer: Consumer) -> list[int]:
        try:
            metadata = consumer.list_topics(self.topic, timeout=_METADATA_TIMEOUT_S)
        except KafkaException as error:
            msg = f"cannot reach Kafka at {self.connection.bootstrap}: {error}"
            raise SourceError(msg) from None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            why = topic.error if topic is not None and topic.error is not None else "no partitions"
            msg = f"Kafka topic {self.topic!r} at {self.connection.bootstrap} is unusable: {why}"
            raise SourceError(msg)
        return list(topic.partitions)

    def _end_offsets(self, consumer: Consumer) -> dict[int, int]:
        ends = {}
        for partition in self.partitions():
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=_METADATA_TIMEOUT_S
                )
            except KafkaException as error:
                msg = f"cannot read the end offsets of Kafka topic {self.topic!r}: {error}"
                raise SourceError(msg) from None
            ends[partition] = high
        return ends

    def _at_end(self) -> bool:
        """Every partition held is past its captured end (and some are held, or none has data)."""
        assert self._end is not None
        if not self._assigned:
            return all(end == 0 for end in self._end.values())
        consumer = self._consumer
        for partition in self._assigned:
            end = self._end.get(partition, 0)
            position = self._next.get(partition)
            if position is None and consumer is not None:  # nothing read yet: where it starts
                low, _ = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), cached=True
                )
                position = low if low >= 0 else None
            if position is None or position < end:
                return False
        return True

    def _problem(self, error: KafkaError) -> None:
        if error.fatal():
            msg = f"Kafka consumer of {self.topic!r} failed: {error.str()}"
            raise SourceError(msg)
        logger.warning("kafka: %s: %s (retrying)", self.topic, error.str())

    def _leave(self) -> None:
        """Close this read's consumer: it leaves the group (the last checkpoint is committed)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            self._closing = True
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as error:
                logger.warning("kafka: closing the consumer of %s: %s", self.topic, error)
            finally:
                self._closing = False
                self._assigned.clear()
                self._next.clear()
                self._end = None

    def close(self) -> None:
        """Leave the group, if a read is still open."""
        self._leave()


class KafkaSourceSettings(BaseModel):
    """A :class:`KafkaSource` as written under ``source:`` in a pipeline YAML.

    >>> KafkaSourceSettings(topic="readings", until_end=True).build().until_end
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["kafka"] = "kafka"
    topic: str = Field(min_length=1)
    bootstrap: str = Field(default=KafkaConnection().bootstrap, min_length=1)
    config: dict[str, str | int | float | bool] = Field(default_factory=dict)
    group: str = Field(default="sensorstream", min_length=1)
    start: Literal["earliest", "latest"] | AwareDatetime = "earliest"
    until_end: bool = False
    batch_messages: int = Field(default=20_000, gt=0)
    poll_timeout: Duration = timedelta(milliseconds=100)

    def build(self) -> KafkaSource:
        """The source these settings describe; nothing connects until the pipeline runs."""
        return KafkaSource(
            self.topic,
            connection=KafkaConnection(bootstrap=self.bootstrap, config=self.config),
            group=self.group,
            start=self.start,
            until_end=self.until_end,
            batch_messages=self.batch_messages,
            poll_timeout_s=self.poll_timeout.total_seconds(),
        )
