"""Where commands look by default: the DuckDB store a pipeline writes unless told otherwise."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DB = Path("sensorstream.duckdb")
