"""The Kafka sink: window results and alert transitions published as JSON, at least once.

::

    sinks:
      - type: kafka
        bootstrap: 127.0.0.1:9092
        results_topic: sensorstream-{pipeline}-{step}   # one topic per results step
        alerts_topic: sensorstream-{pipeline}-alerts    # every rule's transitions
        config: {compression.type: lz4}                 # librdkafka settings, as they are

Each result is one message keyed by its step's key (``"dev-01"``, or a JSON array for a
key of several columns), so a key's results stay in one partition, in order: with the
topic compacted, the latest result per key and window is what a reader keeps. Its value
is the result row as JSON with ``pipeline``, ``step`` and ``op`` (``upsert`` or
``delete``, a retracted session window). An alert transition is keyed by its alert's key,
with its ``transition_id`` in the header ``idempotency-key``; a result's header holds its
step, key, window and revision.

**Delivery.** The producer is idempotent (``enable.idempotence``: librdkafka retries
without duplicating within a session). Before each checkpoint, the runner's wait returns
only once every message produced so far is acknowledged by the brokers
(:meth:`KafkaSink.flush_started`); a message that could not be delivered (past
``message.timeout.ms``) fails the checkpoint, so the pipeline stops rather than lose it.
After a crash the pipeline replays from its last checkpoint and publishes those results
again: the same key, window and revision, and transitions with the same id, which a
reader drops as repeats. A published message cannot be taken back, so :meth:`restore`
has nothing to forget.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

import orjson
import polars as pl
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sensorstream.brokers.kafka import KafkaConnection, produce_waiting
from sensorstream.durations import Duration
from sensorstream.engine.outputs import OP, START
from sensorstream.errors import SinkError
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch

_TOPIC_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def topic_name(template: str, pipeline: str, step: str = "") -> str:
    """A topic from its template, with characters Kafka refuses in names made ``_``.

    >>> topic_name("sensorstream-{pipeline}-{step}", "cold chain", "p99/1m")
    'sensorstream-cold_chain-p99_1m'
    """
    name = template.format(pipeline=pipeline, step=step)
    return _TOPIC_CHARACTERS.sub("_", name)[:249]


class KafkaSink(Sink):
    """Publishes results and transitions to Kafka; see the module."""

    def __init__(
        self,
        *,
        connection: KafkaConnection | None = None,
        results_topic: str = "sensorstream-{pipeline}-{step}",
        alerts_topic: str = "sensorstream-{pipeline}-alerts",
        flush_timeout_s: float = 60.0,
    ) -> None:
        self.connection = connection or KafkaConnection()
        self.results_topic = results_topic
        self.alerts_topic = alerts_topic
        self.flush_timeout_s = flush_timeout_s
        self._producer: Producer | None = None
        self._pipeline = ""
        self._keys: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._produced = 0
        self._settled = 0  # acknowledged or failed
        self._failures: list[str] = []

    def open(self, pipeline: PipelineInfo) -> None:
        """Create the producer (it connects in the background)."""
        self._pipeline = pipeline.name
        self._keys = {step.name: step.key for step in pipeline.steps}
        settings = self.connection.client(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "client.id": f"sensorstream-{pipeline.name}",
            }
        )
        try:
            self._producer = Producer(settings)
        except KafkaException as error:
            msg = f"cannot create a Kafka producer for {self.connection.bootstrap}: {error}"
            raise SinkError(msg) from None

    def write(self, batch: SinkBatch) -> None:
        """Produce the batch's results and transitions (waiting while the local queue is full)."""
        for step, results in batch.results.items():
            if results.height:
                self._publish_results(step, results)
        for transitions in batch.alerts.values():
            if transitions.height:
                self._publish_transitions(transitions)
        self._require().poll(0)

    def _publish_results(self, step: str, results: pl.DataFrame) -> None:
        key = self._keys.get(step, ())
        if OP not in results.columns:
            results = results.with_columns(pl.lit("upsert").alias(OP))
        rows = results.rename({OP: "op"}).with_columns(
            pl.lit(self._pipeline).alias("pipeline"), pl.lit(step).alias("step")
        )
        keys = _keys(results, key)
        headers = [
            f"{step}|{k}|{start}|{revision}".encode()
            for k, start, revision in zip(
                keys,
                results[START].cast(pl.String).to_list(),
                results["revision"].to_list() if "revision" in results.columns else [0] * len(keys),
                strict=True,
            )
        ]
        topic = topic_name(self.results_topic, self._pipeline, step)
        self._produce(topic, _json_rows(rows), keys, headers)

    def _publish_transitions(self, transitions: pl.DataFrame) -> None:
        rows = transitions.with_columns(pl.lit(self._pipeline).alias("pipeline"))
        keys = [str(k) if k is not None else "" for k in transitions["key"].to_list()]
        headers = [str(t).encode() for t in transitions["transition_id"].to_list()]
        topic = topic_name(self.alerts_topic, self._pipeline)
        self._produce(topic, _json_rows(rows), keys, headers)

    def _produce(
        self, topic: str, values: list[bytes], keys: list[str], headers: list[bytes]
    ) -> None:
        producer = self._require()
        for value, key, header in zip(values, keys, headers, strict=True):
            try:
                produce_waiting(
                    producer,
                    topic,
                    value,
                    key.encode(),
                    headers=[("idempotency-key", header)],
                    on_delivery=self._delivered,
                )
            except KafkaException as error:
                msg = f"publishing to Kafka topic {topic!r} failed: {error}"
                raise SinkError(msg) from None
            with self._lock:
                self._produced += 1

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            self._settled += 1
            if error is not None:
                self._failures.append(f"{message.topic()}: {error.str()}")

    def flush_started(self) -> Callable[[], None]:
        """The wait returns once everything produced so far is acknowledged (or raises)."""
        with self._lock:
            target = self._produced
        producer = self._require()

        def acknowledged() -> None:
            deadline = time.monotonic() + self.flush_timeout_s
            while True:
                with self._lock:
                    failures, self._failures = self._failures, []
                    settled = self._settled
                if failures:
                    msg = (
                        f"Kafka did not take {len(failures)} message(s) "
                        f"({'; '.join(failures[:3])}); the pipeline replays them from its "
                        "last checkpoint when it runs again"
                    )
                    raise SinkError(msg)
                if settled >= target:
                    return
                if time.monotonic() > deadline:
                    msg = (
                        f"Kafka at {self.connection.bootstrap} acknowledged {settled} of "
                        f"{target} messages within {self.flush_timeout_s:g} s"
                    )
                    raise SinkError(msg)
                producer.poll(0.05)

        return acknowledged

    def flush(self) -> None:
        """Wait until every message produced so far is acknowledged."""
        self.flush_started()()

    def close(self) -> None:
        """Deliver what is queued, then let the producer go."""
        if self._producer is not None:
            try:
                self.flush()
            finally:
                self._producer = None

    def _require(self) -> Producer:
        if self._producer is None:
            msg = "the Kafka sink is not open"
            raise SinkError(msg)
        return self._producer


def _keys(results: pl.DataFrame, key: tuple[str, ...]) -> list[str]:
    """Each row's message key: its one key value as text, or a JSON array of several."""
    if not key:
        return [""] * results.height
    if len(key) == 1:
        return [("" if v is None else str(v)) for v in results[key[0]].to_list()]
    return [orjson.dumps(list(row)).decode() for row in results.select(key).iter_rows()]


def _json_rows(frame: pl.DataFrame) -> list[bytes]:
    """One JSON object per row (times as ISO 8601, as the API writes them)."""
    text = frame.write_ndjson()
    return [line.encode() for line in text.splitlines()]


class KafkaSinkSettings(BaseModel):
    """``sinks: [{type: kafka, ...}]`` in a pipeline's YAML (see the module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["kafka"] = "kafka"
    bootstrap: str = Field(default=KafkaConnection().bootstrap, min_length=1)
    config: dict[str, str | int | float | bool] = Field(default_factory=dict)
    results_topic: str = Field(default="sensorstream-{pipeline}-{step}", min_length=1)
    alerts_topic: str = Field(default="sensorstream-{pipeline}-alerts", min_length=1)
    flush_timeout: Duration = timedelta(seconds=60)

    @field_validator("results_topic", "alerts_topic")
    @classmethod
    def _template(cls, template: str) -> str:
        try:
            template.format(pipeline="p", step="s")
        except (KeyError, IndexError, ValueError):
            msg = f"{template!r} may name only {{pipeline}} and {{step}}"
            raise ValueError(msg) from None
        return template

    def build(self) -> KafkaSink:
        """The sink these settings describe."""
        return KafkaSink(
            connection=KafkaConnection(bootstrap=self.bootstrap, config=self.config),
            results_topic=self.results_topic,
            alerts_topic=self.alerts_topic,
            flush_timeout_s=self.flush_timeout.total_seconds(),
        )
