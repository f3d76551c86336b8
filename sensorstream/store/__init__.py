"""Reading back what the sinks wrote, for the CLI and the HTTP API."""

from __future__ import annotations

from sensorstream.store.query import Store, StoreCounts, StoredPipeline, StoredStep

__all__ = ["Store", "StoreCounts", "StoredPipeline", "StoredStep"]
