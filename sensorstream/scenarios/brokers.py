"""A scenario through a real broker: its feeds published to MQTT or Kafka, read back from it.

``sensorstream demo NAME --to URL`` runs the scenario's pipeline as it stands, except that
each stream's ``feed`` source is replaced by a source of the broker (:func:`routed`), and
the feeds are published to that broker meanwhile (:class:`Journey`). One topic per
stream, the reports' payloads unchanged:

- ``mqtt://HOST:PORT/TOPIC``: stream ``s`` is published to ``TOPIC/s/<device id>`` at QoS
  1 (the id escaped as a topic level) and read from the filter ``TOPIC/s/+`` at QoS 1,
  through the source's durable log, the device id from the topic when a payload has none;
- ``kafka://HOST:PORT/TOPIC``: stream ``s`` is the topic ``TOPIC-s`` (created with one
  partition if missing), keyed by device id, read by the group
  ``sensorstream-<pipeline>`` from the first message produced after the run began.

The feeds are pure functions of time, so the reports published are the embedded run's,
and a bounded run (a ``duration``) ends once its sources have read all that was published
(:class:`~sensorstream.sources.feed_publish.UntilPublished`): it stores the same windows.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from sensorstream.brokers.kafka import KafkaConnection, ensure_topics, parse_kafka_url
from sensorstream.brokers.mqtt.topics import check_filter, escape_level
from sensorstream.errors import ConfigError, SourceError
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.sources.base import Source
from sensorstream.sources.feed import FeedSourceSettings
from sensorstream.sources.feed_publish import READY_TIMEOUT_S, FeedPublishing, UntilPublished
from sensorstream.sources.mqtt import MqttSource
from sensorstream.sources.simulator_publish import Publisher, publisher_for

if TYPE_CHECKING:
    from sensorstream.scenarios import Scenario

__all__ = ["Journey", "Route", "routed"]

_REACH_TIMEOUT_S = 5.0  # an unreachable Kafka is said within this
_URL_HELP = "--to takes mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC"


@dataclass(frozen=True)
class Route:
    """Where a scenario's streams go: a broker and the topic that names them all."""

    scheme: Literal["mqtt", "kafka"]
    address: str  # host:port
    topic: str
    url: str

    @classmethod
    def parse(cls, url: str) -> Route:
        """The route a ``--to`` address names; ConfigError saying the form if it is none.

        >>> Route.parse("kafka://127.0.0.1:19092/weather").topic_of("readings")
        'weather-readings'
        >>> Route.parse("mqtt://127.0.0.1:18830/demo/weather").topic_of("readings")
        'demo/weather/readings/{device_id}'
        """
        parts = urlsplit(url)
        if parts.scheme == "kafka":
            address, topic = parse_kafka_url(url)
            return cls("kafka", address, topic, url)
        if parts.scheme != "mqtt":
            msg = f"{url!r}: {_URL_HELP}"
            raise ConfigError(msg)
        topic = unquote(parts.path.strip("/"))
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.username is not None or parts.password is not None:
            msg = f"{url!r}: a scenario goes to an MQTT broker without a login (no user@)"
            raise ConfigError(msg)
        if not parts.hostname or not topic or (port is None and ":" in parts.netloc):
            msg = f"{url!r} is no MQTT address: write mqtt://HOST:PORT/TOPIC"
            raise ConfigError(msg)
        try:
            check_filter(topic)
        except ValueError as error:
            msg = f"{url!r}: the topic {topic!r} {error}"
            raise ConfigError(msg) from None
        if any(char in topic for char in "+#{}"):
            msg = f"{url!r}: the topic may hold no wildcard (+, #) nor braces"
            raise ConfigError(msg)
        return cls("mqtt", f"{parts.hostname}:{port or 1883}", topic, url)

    def topic_of(self, stream: str) -> str:
        """The topic a stream is published to (MQTT: with ``{device_id}`` in it)."""
        if self.scheme == "kafka":
            return f"{self.topic}-{stream}"
        return f"{self.topic}/{stream}/{{device_id}}"

    def read_from(self, stream: str) -> str:
        """What the pipeline reads a stream from: a Kafka topic or an MQTT topic filter."""
        if self.scheme == "kafka":
            return self.topic_of(stream)
        return f"{self.topic}/{stream}/+"

    def source(self, stream: str, pipeline: str, began: datetime) -> dict[str, Any]:
        """The source reading ``stream``, as YAML writes it."""
        if self.scheme == "kafka":
            return {
                "type": "kafka",
                "bootstrap": self.address,
                "topic": self.topic_of(stream),
                "group": f"sensorstream-{pipeline}",
                "start": began.isoformat(),
            }
        return {
            "type": "mqtt",
            "url": f"mqtt://{self.address}",
            "topics": [self.read_from(stream)],
            "qos": 1,
            "device_id_from_topic": self.topic_of(stream),
            "clean_start": True,  # what an earlier run left queued is not this run's
        }

    def reading(self, stream: str, pipeline: str) -> str:
        """What the pipeline reads ``stream`` from, said for a person."""
        if self.scheme == "kafka":
            return f"topic {self.read_from(stream)} as group sensorstream-{pipeline}"
        return f"topic filter {self.read_from(stream)} at QoS 1, through its durable log"

    def publisher(self, stream: str) -> Publisher:
        """A publisher of ``stream``'s topic (connected, for MQTT)."""
        host = f"{self.scheme}://{self.address}/"
        return publisher_for(host + self.topic_of(stream))

    def prepare(self, streams: list[str]) -> None:
        """Create the Kafka topics that are missing; an unreachable broker fails here."""
        if self.scheme == "kafka":
            connection = KafkaConnection(bootstrap=self.address)
            topics = [self.topic_of(stream) for stream in streams]
            ensure_topics(connection, topics, timeout_s=_REACH_TIMEOUT_S)


def routed(data: dict[str, Any], route: Route, began: datetime) -> dict[str, Any]:
    """A pipeline's YAML data with each ``feed`` source replaced by the route's source."""
    pipeline = str(data.get("name", "scenario"))
    if isinstance(data.get("source"), dict) and data["source"].get("type") == "feed":
        data["source"] = route.source("readings", pipeline, began)
    for name, stream in (data.get("streams") or {}).items():
        if stream["source"].get("type") == "feed":
            stream["source"] = route.source(name, pipeline, began)
    return data


class Journey:
    """One run of a scenario through a broker: what publishes its feeds, what reads them.

    ``embedded`` is the scenario's own spec (its feeds as they would run in process) and
    ``spec`` the routed one (:func:`routed`). :meth:`sources` are the sources to run
    ``spec`` with; :meth:`start` starts publishing once they are ready; :meth:`stop` stops
    it. Nothing connects before :meth:`open`: a bad address fails first, an unreachable
    broker there.
    """

    @classmethod
    def of(
        cls,
        scenario: Scenario,
        url: str,
        *,
        live: bool | None = None,
        duration: timedelta | None = None,
        inject: str | None = None,
        changes: Mapping[str, Any] | None = None,
        tables_at: str | None = None,
    ) -> Journey:
        """A scenario's run through the broker at ``url``, its feeds as ``spec`` makes them."""
        route = Route.parse(url)
        options: dict[str, Any] = {"live": live, "duration": duration, "inject": inject}
        options |= {"changes": changes, "tables_at": tables_at}
        embedded = scenario.spec(**options)
        spec = scenario.spec(**options, via=url)
        return cls(embedded, spec, route)

    def __init__(self, embedded: PipelineSpec, spec: PipelineSpec, route: Route) -> None:
        self.route, self.spec = route, spec
        self.feeds: dict[str, FeedSourceSettings] = {
            name: stream.source
            for name, stream in embedded.stream_specs().items()
            if isinstance(stream.source, FeedSourceSettings)
        }
        if not self.feeds:
            msg = f"pipeline {embedded.name!r} reads no feed: there is nothing to publish"
            raise ConfigError(msg)
        self.publishing: FeedPublishing | None = None
        self.wrapped: dict[str, UntilPublished] = {}

    def streams(self) -> list[tuple[str, str, str]]:
        """Each stream, where it is published (a ``--to`` address) and what reads it."""
        where = f"{self.route.scheme}://{self.route.address}/"
        return [
            (
                stream,
                where + self.route.topic_of(stream),
                self.route.reading(stream, self.spec.name),
            )
            for stream in self.feeds
        ]

    def open(self) -> Journey:
        """Reach the broker: create Kafka topics, connect the publishers."""
        self.route.prepare(list(self.feeds))
        publishers: dict[str, Publisher] = {}
        try:
            for stream in self.feeds:
                publishers[stream] = self.route.publisher(stream)
        except Exception:
            for publisher in publishers.values():
                publisher.close()
            raise
        escape = escape_level if self.route.scheme == "mqtt" else str
        self.publishing = FeedPublishing(
            self.feeds, publishers, device_topic=escape, ready=self._ready
        )
        return self

    def sources(self) -> dict[str, Source]:
        """The routed spec's source of each published stream, ending when publishing did."""
        if self.publishing is None:
            msg = "Journey.open() must run before sources()"
            raise RuntimeError(msg)
        specs = self.spec.stream_specs()
        self.wrapped = {
            stream: UntilPublished(specs[stream].source.build(), self.publishing, stream)
            for stream in self.feeds
        }
        return dict(self.wrapped)

    def clear_logs(self) -> None:
        """Delete the MQTT sources' ingest logs (a fresh run; after the runner placed them)."""
        for source in self.wrapped.values():
            inner = source.inner
            if isinstance(inner, MqttSource) and inner.log_dir is not None:
                shutil.rmtree(inner.log_dir, ignore_errors=True)

    @contextmanager
    def running(self, *, fresh: bool = True) -> Iterator[Journey]:
        """Publishing while the body runs the pipeline (made with :meth:`sources`).

        Enter it once the runner is made (it placed the MQTT logs, which a fresh run
        deletes) and before it runs; publishing stops when the body ends.
        """
        if fresh:
            self.clear_logs()
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def start(self) -> None:
        """Start publishing (it waits until the MQTT sources have subscribed)."""
        if self.publishing is None:
            msg = "Journey.open() must run before start()"
            raise RuntimeError(msg)
        self.publishing.start()

    def stop(self) -> None:
        """Stop publishing and disconnect."""
        if self.publishing is not None:
            self.publishing.stop()

    def _ready(self) -> None:
        for stream, source in self.wrapped.items():
            inner = source.inner
            if isinstance(inner, MqttSource) and not inner.subscribed.wait(READY_TIMEOUT_S):
                msg = (
                    f"the pipeline's MQTT source of stream {stream} did not subscribe to "
                    f"{self.route.read_from(stream)} at {self.route.url} within "
                    f"{READY_TIMEOUT_S:g} s"
                )
                raise SourceError(msg)
