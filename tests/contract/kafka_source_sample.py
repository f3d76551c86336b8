"""The Kafka source's sample for the source contract: the NDJSON sample as a topic's messages.

Each line of the sample is one message of a one-partition topic on the broker
``scripts/kafka.sh`` runs (an empty line an empty message: a blank line), read to its end
(``until_end``) in small batches. A dynamic source hears where to resume from the runner's
listener, not from ``resume_after``; :class:`Resume` plays that part.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sensorstream.sources import KafkaSourceSettings
from tests.contract.kafka_sample import bootstrap


class Resume:
    """A listener that answers every assignment with fixed positions (the contract's)."""

    def __init__(self, positions: Mapping[int, int]) -> None:
        self.positions = dict(positions)

    def assigned(self, partitions: Sequence[int]) -> Mapping[int, int]:
        return {p: self.positions[p] for p in partitions if p in self.positions}

    def revoked(self, partitions: Sequence[int]) -> None:
        del partitions


def kafka_topic_of(lines: Sequence[bytes], folder: Path) -> KafkaSourceSettings:
    """A new topic holding ``lines``, one message each; the settings reading it to its end."""
    address = bootstrap()
    topic = "contract-source-" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    admin = AdminClient({"bootstrap.servers": address})
    if topic not in admin.list_topics(timeout=10).topics:
        created = admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "-1"})])
        created[topic].result(30)
        producer = Producer({"bootstrap.servers": address, "enable.idempotence": True})
        for line in lines:
            producer.produce(topic, line.rstrip(b"\n"))
        assert producer.flush(30) == 0
    return KafkaSourceSettings(
        bootstrap=address,
        topic=topic,
        group=f"contract-{uuid.uuid5(uuid.NAMESPACE_URL, topic).hex[:8]}",
        until_end=True,
        batch_messages=30,
    )
