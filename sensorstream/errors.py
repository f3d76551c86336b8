"""One exception tree for everything sensorstream raises on purpose.

::

    SensorstreamError
     ├── ConfigError          a pipeline definition (YAML or Python) is invalid
     ├── InvalidReading       one reading cannot be decoded or fails validation
     ├── SourceError          a source cannot be opened or read
     │    └── IngestLogError  the HTTP source's ingest log cannot be opened, read or written
     │         └── Backpressure  the ingest log is full of unconsumed lines: retry later
     ├── SinkError            a sink cannot be opened or written
     ├── StoreError           what a sink stored cannot be opened or queried
     ├── CheckpointError      a checkpoint is missing, corrupt or belongs to another pipeline
     └── Denied               an API request lacks a valid token or scope (sensorstream.api.auth)
"""

from __future__ import annotations


class SensorstreamError(Exception):
    """Base of every error sensorstream raises on purpose."""


class ConfigError(SensorstreamError):
    """A pipeline definition is invalid; the message names the field and the allowed values."""


class InvalidReading(SensorstreamError):
    """A reading cannot be decoded or fails validation; it belongs in the dead-letter store."""


class SourceError(SensorstreamError):
    """A source cannot be opened or read."""


class SinkError(SensorstreamError):
    """A sink cannot be opened or written."""


class StoreError(SensorstreamError):
    """What a sink stored cannot be opened or queried (missing, locked, unknown pipeline)."""


class StoreBusy(StoreError):
    """The store cannot be read just now (a pipeline holds it, or has not opened it yet)."""


class CheckpointError(SensorstreamError):
    """A checkpoint is missing, corrupt or was written by a different pipeline."""
