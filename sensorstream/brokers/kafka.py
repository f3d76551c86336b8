"""Reaching a Kafka cluster: the connection settings the Kafka source, sink and simulator share.

One model says where the brokers are and how to authenticate (:class:`KafkaConnection`);
librdkafka's own settings pass through ``config`` for anything else (SASL, TLS files,
timeouts), so nothing librdkafka offers is out of reach. :func:`parse_kafka_url` reads the
``kafka://HOST:PORT/TOPIC`` form the command line takes; :func:`ensure_topics` creates the
topics a publisher needs, and :func:`offsets_at` finds where a moment falls in a topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import BaseModel, ConfigDict, Field

from sensorstream.errors import ConfigError, SourceError

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "KafkaConnection",
    "ensure_topics",
    "offsets_at",
    "parse_kafka_url",
    "produce_waiting",
]

logger = logging.getLogger("sensorstream.kafka")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
_FULL_QUEUE_WAIT_S = 0.05
_ADMIN_TIMEOUT_S = 10.0


class KafkaConnection(BaseModel):
    """Where the brokers are, and librdkafka settings for everything else.

    >>> KafkaConnection(bootstrap="10.0.0.5:9092", config={"security.protocol": "SSL"}).client()
    {'bootstrap.servers': '10.0.0.5:9092', 'security.protocol': 'SSL'}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap: str = Field(default=DEFAULT_BOOTSTRAP, min_length=1)
    # Passed to librdkafka as they are (https://docs.confluent.io/platform/current/clients/
    # librdkafka/html/md_CONFIGURATION.html): security.protocol, sasl.*, ssl.*, ...
    config: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def client(self, **settings: Any) -> dict[str, Any]:
        """The client's settings: bootstrap servers, ``settings``, then ``config`` on top."""
        return {"bootstrap.servers": self.bootstrap, **settings, **self.config}


def parse_kafka_url(url: str) -> tuple[str, str]:
    """``kafka://HOST:PORT/TOPIC`` as (bootstrap servers, topic).

    >>> parse_kafka_url("kafka://127.0.0.1:19092/readings")
    ('127.0.0.1:19092', 'readings')
    """
    parts = urlsplit(url)
    topic = parts.path.strip("/")
    if parts.scheme != "kafka" or not parts.netloc or not topic or "/" in topic:
        msg = f"{url!r} is no Kafka address: write kafka://HOST:PORT/TOPIC"
        raise ConfigError(msg)
    return parts.netloc, topic


def produce_waiting(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None,
    *,
    headers: list[tuple[str, str | bytes | None]] | None = None,
    on_delivery: Callable[[Any, Any], None] | None = None,
) -> None:
    """Produce one message; while the client's local queue is full, serve deliveries and retry.

    That is the producer's back-pressure: a slow broker slows the caller instead of the
    queue growing without bound or the message being dropped.
    """
    while True:
        try:
            producer.produce(topic, value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(_FULL_QUEUE_WAIT_S)


def ensure_topics(
    connection: KafkaConnection,
    topics: Sequence[str],
    *,
    partitions: int = 1,
    timeout_s: float = _ADMIN_TIMEOUT_S,
) -> list[str]:
    """Create those of ``topics`` the cluster lacks (``partitions`` each); return the created.

    A topic that exists is left as it is. An unreachable cluster is a
    :class:`~sensorstream.errors.SourceError` naming it, within ``timeout_s``.
    """
    admin = AdminClient(connection.client(), logger=logger)  # not librdkafka's stderr
    where = connection.bootstrap
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as error:
        msg = f"cannot reach Kafka at {where}: {error.args[0].str() if error.args else error}"
        raise SourceError(msg) from None
    missing = [topic for topic in topics if topic not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(topic, partitions) for topic in missing], operation_timeout=timeout_s
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as error:
            code = error.args[0].code() if error.args else None
            if code != KafkaError.TOPIC_ALREADY_EXISTS:  # another client was quicker
                msg = f"Kafka at {where} did not create topic {topic!r}: {error}"
                raise SourceError(msg) from None
    return missing


def offsets_at(
    consumer: Consumer, topic: str, partitions: Sequence[int], moment: datetime
) -> dict[int, int]:
    """Each partition's offset of the first message produced at or after ``moment``.

    A partition with no such message yet gets its end offset, read now as a number (not
    librdkafka's "end", resolved later): a message produced after this call is read, never
    skipped.
    """
    moment_ms = int(moment.timestamp() * 1000)
    asked = [TopicPartition(topic, partition, moment_ms) for partition in partitions]
    if not asked:
        return {}
    try:
        found = consumer.offsets_for_times(asked, timeout=_ADMIN_TIMEOUT_S)
        starts = {}
        for tp in found:
            offset = tp.offset
            if offset < 0:
                _, offset = consumer.get_watermark_offsets(
                    TopicPartition(topic, tp.partition), timeout=_ADMIN_TIMEOUT_S
                )
            starts[tp.partition] = offset
    except KafkaException as error:
        msg = f"cannot find the offsets of Kafka topic {topic!r} at {moment}: {error}"
        raise SourceError(msg) from None
    return starts
