"""The MQTT sink: window results and alert transitions published as JSON, acknowledged by flush.

::

    sinks:
      - type: mqtt
        url: mqtts://broker.example.com
        username: pipeline
        password_env: MQTT_PASSWORD
        results_topic: sensorstream/{pipeline}/{step}/{key}   # the default
        alerts_topic: sensorstream/{pipeline}/{step}/{key}    # the default (a rule's name)
        qos: 1
        retain: true            # results: the broker keeps the latest per key, for dashboards
        flush_timeout: 30s

``{key}`` is the row's key values joined by ``/``, each escaped (``%2F`` for ``/``, ``%2B``
``+``, ``%23`` ``#``, ``%25`` ``%``, ``%24`` ``$``; a null is ``%null``), so a device id can
neither add topic levels nor read as a wildcard (:mod:`~sensorstream.brokers.mqtt.topics`).

A result is one message: ``{"pipeline": ..., "step": ..., <key columns>, "window_start":
..., "window_end": ..., <aggregates>, "revision": 0, "final": false}``, times in ISO 8601.
A retracted result (``_op`` delete, a merged session's old parts) publishes a deletion:
with ``retain``, an empty retained message, which clears the key's retained value (a
merge's replacement follows it); without, ``{..., "_op": "delete"}``. A batch's results go
out in window order (the engine's order within a window), so the value a key retains is
the last one published: its newest window, except that a correction of an older window
(a late reading within ``allowed_lateness``) stays retained until the key's next window.
An alert transition is the webhook's JSON body
(:func:`~sensorstream.sinks.webhook.transition_body`), never retained: transitions are events.

**Delivery**: :meth:`MqttSink.write` publishes and goes on; paho sends from its network
thread and resends what a dropped connection left unacknowledged, in the order published
(:mod:`~sensorstream.sinks.mqtt_delivery`; while the broker is away, messages wait in order
and go once it is back). :meth:`~MqttSink.flush`
(before each checkpoint) waits until the broker has acknowledged everything published so
far (QoS 1: PUBACK; QoS 0: written to the socket) and raises
:class:`~sensorstream.errors.SinkError` after ``flush_timeout``, so a checkpoint never
covers a result the broker has not got. A published message cannot be taken back: after a
crash the replay publishes the results after the checkpoint again (at least once; being
upserts, a retained value ends as it would have). ``max_pending`` messages at most await
their acknowledgement; a write past it waits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Literal

import orjson
import polars as pl
from pydantic import Field, field_validator, model_validator

from sensorstream.brokers.mqtt.link import Link
from sensorstream.brokers.mqtt.settings import Broker, MqttConnection
from sensorstream.brokers.mqtt.topics import check_template, escape_level, fill_template, key_levels
from sensorstream.durations import Duration
from sensorstream.engine.outputs import DELETE, OP, START
from sensorstream.errors import SinkError
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch
from sensorstream.sinks.mqtt_delivery import Publisher
from sensorstream.sinks.webhook import transition_body

__all__ = ["DEFAULT_TOPIC", "MqttSink", "MqttSinkSettings"]

DEFAULT_TOPIC = "sensorstream/{pipeline}/{step}/{key}"
DEFAULT_MAX_PENDING = 10_000


class MqttSink(Sink):
    """Publishes results and alert transitions to ``broker``; see the module."""

    def __init__(
        self,
        broker: Broker,
        *,
        results_topic: str = DEFAULT_TOPIC,
        alerts_topic: str = DEFAULT_TOPIC,
        qos: Literal[0, 1] = 1,
        retain: bool = False,
        client_id: str | None = None,
        flush_timeout: timedelta = timedelta(seconds=30),
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.broker = broker
        self.results_topic = check_template(results_topic)
        self.alerts_topic = check_template(alerts_topic)
        self.qos = qos
        self.retain = retain
        self.client_id = client_id
        self.flush_timeout = flush_timeout
        self.max_pending = max_pending
        self._pipeline = ""
        self._keys: dict[str, tuple[str, ...]] = {}
        self._publisher: Publisher | None = None

    # -- the sink contract -----------------------------------------------------------------
    def open(self, pipeline: PipelineInfo) -> None:
        """Start connecting (in the background: a broker down now holds up only flush)."""
        self._pipeline = pipeline.name
        self._keys = {step.name: step.key for step in pipeline.steps}
        client_id = self.client_id or f"sensorstream-{pipeline.name}-sink-{uuid.uuid4().hex[:8]}"
        link = Link(self.broker, client_id, role="mqtt sink")
        link.client.max_inflight_messages_set(min(self.max_pending, 1000))
        self._publisher = Publisher(
            link, qos=self.qos, timeout=self.flush_timeout, max_pending=self.max_pending
        )
        link.start()

    def restore(self, positions: Mapping[int, int]) -> None:
        """Nothing to forget: a published message cannot be taken back (see the module)."""
        del positions

    def write(self, batch: SinkBatch) -> None:
        """Publish the batch's results and alert transitions."""
        publisher = self._require_open()
        for step, frame in batch.results.items():
            for topic, payload, retain in self._results(step, frame):
                publisher.publish(topic, payload, retain=retain)
        for step, frame in batch.alerts.items():
            for row in frame.iter_rows(named=True):
                values = list(orjson.loads(row["key"]).values()) if row["key"] else []
                topic = self._topic(self.alerts_topic, step, values)
                publisher.publish(topic, transition_body(self._pipeline, row), retain=False)

    def flush_started(self) -> Callable[[], None]:
        """The wait for everything published so far to be acknowledged (see :meth:`flush`)."""
        publisher = self._require_open()
        upto = publisher.published
        return lambda: publisher.wait(lambda: publisher.oldest_pending() > upto, "flush")

    def flush(self) -> None:
        """Wait until the broker acknowledged every message published so far.

        Raises :class:`~sensorstream.errors.SinkError` after ``flush_timeout``, or at once
        if the broker refused the connection (a wrong password).
        """
        self.flush_started()()

    def close(self) -> None:
        """Wait for the acknowledgements (up to ``flush_timeout``), then disconnect."""
        if self._publisher is None:
            return
        try:
            self.flush()
        finally:
            self._publisher.link.stop()
            self._publisher = None

    # -- what is published ------------------------------------------------------------------
    def _results(self, step: str, frame: pl.DataFrame) -> Iterator[tuple[str, bytes, bool]]:
        """Each result row's topic, payload and retain flag, in window order."""
        if frame.height == 0:
            return
        key = self._keys.get(step, ())
        ordered = frame.sort(START, maintain_order=True) if START in frame else frame
        for row in ordered.iter_rows(named=True):
            topic = self._topic(self.results_topic, step, [row[column] for column in key])
            deleted = row.pop(OP, None) == DELETE
            if deleted and self.retain:
                yield topic, b"", True
                continue
            body = {"pipeline": self._pipeline, "step": step, **row}
            if deleted:
                body[OP] = DELETE
            yield topic, orjson.dumps(body), self.retain

    def _topic(self, template: str, step: str, values: list[Any]) -> str:
        return fill_template(
            template,
            {
                "pipeline": escape_level(self._pipeline),
                "step": escape_level(step),
                "key": key_levels(values),
            },
        )

    def _require_open(self) -> Publisher:
        if self._publisher is None:
            msg = f"the mqtt sink for {self.broker.url} is not open; call open() first"
            raise SinkError(msg)
        return self._publisher


class MqttSinkSettings(MqttConnection):
    """``sinks: [{type: mqtt, url: ..., ...}]`` in a pipeline's YAML (see the module).

    >>> MqttSinkSettings(url="mqtt://localhost", retain=True).results_topic
    'sensorstream/{pipeline}/{step}/{key}'
    """

    type: Literal["mqtt"] = "mqtt"
    results_topic: str = DEFAULT_TOPIC
    alerts_topic: str = DEFAULT_TOPIC
    qos: Literal[0, 1] = 1
    retain: bool = False
    flush_timeout: Duration = Field(default="30s", validate_default=True)
    max_pending: int = Field(default=DEFAULT_MAX_PENDING, ge=1, le=65000)

    @field_validator("results_topic", "alerts_topic")
    @classmethod
    def _template(cls, template: str) -> str:
        return check_template(template)

    @model_validator(mode="after")
    def _positive(self) -> MqttSinkSettings:
        if self.flush_timeout <= timedelta(0):
            msg = "flush_timeout must be positive"
            raise ValueError(msg)
        return self

    def build(self) -> MqttSink:
        """The sink these settings describe; the password is read from the environment now."""
        return MqttSink(
            self.broker(),
            results_topic=self.results_topic,
            alerts_topic=self.alerts_topic,
            qos=self.qos,
            retain=self.retain,
            client_id=self.client_id,
            flush_timeout=self.flush_timeout,
            max_pending=self.max_pending,
        )
