"""sensorstream: real-time analytics of IoT sensor data, embedded, in event time.

The public API: define a :class:`Pipeline` in Python (or a YAML :class:`PipelineSpec`),
then :func:`run` it. Everything else is internal and may change.
"""

from __future__ import annotations

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.windows import HoppingWindow, SessionWindow, TumblingWindow
from sensorstream.errors import (
    CheckpointError,
    ConfigError,
    InvalidReading,
    SensorstreamError,
    SinkError,
    SourceError,
)
from sensorstream.pipeline.builder import Pipeline
from sensorstream.pipeline.spec import PipelineSpec, load_spec, parse_spec
from sensorstream.readings import ReadingFormat
from sensorstream.runtime.counters import RunSummary
from sensorstream.runtime.runner import Runner


def run(pipeline: Pipeline | PipelineSpec, *, fresh: bool = False) -> RunSummary:
    """Run a pipeline in this process until its source ends; returns the run summary."""
    spec = pipeline.spec() if isinstance(pipeline, Pipeline) else pipeline
    return Runner(spec, fresh=fresh).run()


__all__ = [
    "Aggregate",
    "CheckpointError",
    "ConfigError",
    "HoppingWindow",
    "InvalidReading",
    "Pipeline",
    "PipelineSpec",
    "ReadingFormat",
    "RunSummary",
    "Runner",
    "SensorstreamError",
    "SessionWindow",
    "SinkError",
    "SourceError",
    "TumblingWindow",
    "load_spec",
    "parse_spec",
    "run",
]
