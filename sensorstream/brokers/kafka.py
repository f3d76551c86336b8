"""Reaching a Kafka cluster: the connection settings the Kafka source, sink and simulator share.

One model says where the brokers are and how to authenticate (:class:`KafkaConnection`);
librdkafka's own settings pass through ``config`` for anything else (SASL, TLS files,
timeouts), so nothing librdkafka offers is out of reach. :func:`parse_kafka_url` reads the
``kafka://HOST:PORT/TOPIC`` form the command line takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import Producer
from pydantic import BaseModel, ConfigDict, Field

from sensorstream.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
_FULL_QUEUE_WAIT_S = 0.05


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
