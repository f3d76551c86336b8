"""sensorstream: real-time analytics of IoT sensor data, embedded, in event time.

The public API: define a :class:`Pipeline` in Python (or a YAML :class:`PipelineSpec`),
then :func:`run` it. Everything else is internal and may change.

The names are loaded on first use, so ``import sensorstream`` (and with it every
``sensorstream ...`` command, even ``--help``) does not pay for Polars, DuckDB and the
engine until something needs them; type checkers see ordinary imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Where each lazily loaded name lives.
_HOMES = {
    "Aggregate": "sensorstream.engine.aggregates",
    "CheckpointError": "sensorstream.errors",
    "ConfigError": "sensorstream.errors",
    "HoppingWindow": "sensorstream.engine.windows",
    "InvalidReading": "sensorstream.errors",
    "Pipeline": "sensorstream.pipeline.builder",
    "PipelineSpec": "sensorstream.pipeline.spec",
    "ReadingFormat": "sensorstream.readings",
    "RunSummary": "sensorstream.runtime.counters",
    "Runner": "sensorstream.runtime.runner",
    "SensorstreamError": "sensorstream.errors",
    "SessionWindow": "sensorstream.engine.windows",
    "SinkError": "sensorstream.errors",
    "SourceError": "sensorstream.errors",
    "TumblingWindow": "sensorstream.engine.windows",
    "load_spec": "sensorstream.pipeline.spec",
    "parse_spec": "sensorstream.pipeline.spec",
}


def run(pipeline: Pipeline | PipelineSpec, *, fresh: bool = False) -> RunSummary:
    """Run a pipeline in this process until its source ends; returns the run summary."""
    from sensorstream.pipeline.builder import Pipeline
    from sensorstream.runtime.runner import Runner

    spec = pipeline.spec() if isinstance(pipeline, Pipeline) else pipeline
    return Runner(spec, fresh=fresh).run()


if not TYPE_CHECKING:  # type checkers resolve the names through the imports above

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            msg = f"module 'sensorstream' has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(import_module(home), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


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
