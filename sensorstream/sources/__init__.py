"""Readings in: one module per origin, each source beside the settings that build it.

``SOURCES`` maps the ``type`` a pipeline YAML names under ``source:`` to the source class.
"""

from __future__ import annotations

from sensorstream.sources.base import Source, SourceBatch
from sensorstream.sources.feed import FeedSource, FeedSourceSettings
from sensorstream.sources.files import FileSource, FileSourceSettings
from sensorstream.sources.http import HttpSource, HttpSourceSettings
from sensorstream.sources.kafka import KafkaSource, KafkaSourceSettings
from sensorstream.sources.mqtt import MqttSource, MqttSourceSettings
from sensorstream.sources.simulator import (
    SimulatorSource,
    SimulatorSourceSettings,
    write_dataset,
)

SOURCES: dict[str, type[Source]] = {
    "file": FileSource,
    "simulator": SimulatorSource,
    "feed": FeedSource,
    "http": HttpSource,
    "kafka": KafkaSource,
    "mqtt": MqttSource,
}

__all__ = [
    "SOURCES",
    "FeedSource",
    "FeedSourceSettings",
    "FileSource",
    "FileSourceSettings",
    "HttpSource",
    "HttpSourceSettings",
    "KafkaSource",
    "KafkaSourceSettings",
    "MqttSource",
    "MqttSourceSettings",
    "SimulatorSource",
    "SimulatorSourceSettings",
    "Source",
    "SourceBatch",
    "write_dataset",
]
