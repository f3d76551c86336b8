"""Results out: one module per destination, each sink beside the settings that build it.

``SINKS`` maps the ``type`` a pipeline YAML names under ``sinks:`` to the sink class.
"""

from __future__ import annotations

from sensorstream.sinks.base import FROM_START, PipelineInfo, Sink, SinkBatch, StepInfo
from sensorstream.sinks.console import ConsoleSink, ConsoleSinkSettings
from sensorstream.sinks.duckdb import DuckDBSink
from sensorstream.sinks.duckdb_settings import DuckDBSinkSettings
from sensorstream.sinks.kafka import KafkaSink, KafkaSinkSettings
from sensorstream.sinks.mqtt import MqttSink, MqttSinkSettings
from sensorstream.sinks.webhook import WebhookSink, WebhookSinkSettings

SINKS: dict[str, type[Sink]] = {
    "duckdb": DuckDBSink,
    "console": ConsoleSink,
    "webhook": WebhookSink,
    "kafka": KafkaSink,
    "mqtt": MqttSink,
}

__all__ = [
    "FROM_START",
    "SINKS",
    "ConsoleSink",
    "ConsoleSinkSettings",
    "DuckDBSink",
    "DuckDBSinkSettings",
    "KafkaSink",
    "KafkaSinkSettings",
    "MqttSink",
    "MqttSinkSettings",
    "PipelineInfo",
    "Sink",
    "SinkBatch",
    "StepInfo",
    "WebhookSink",
    "WebhookSinkSettings",
]
