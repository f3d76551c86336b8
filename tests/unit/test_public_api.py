"""The public API: exactly these names, all importable, none of them loaded until used."""

from __future__ import annotations

import subprocess
import sys

import sensorstream

EXPORTED = [
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
HEAVY = ("polars", "duckdb", "numpy", "pyarrow", "numba", "pydantic")


def test_the_exported_names_are_pinned() -> None:
    assert sensorstream.__all__ == EXPORTED


def test_every_exported_name_is_importable_and_listed_by_dir() -> None:
    for name in EXPORTED:
        assert getattr(sensorstream, name) is not None, name
        assert name in dir(sensorstream)
    from sensorstream import Pipeline, TumblingWindow, run  # noqa: F401


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(sensorstream, "Pipelin")


def test_importing_the_package_loads_no_heavy_dependency() -> None:
    code = f"import sys, sensorstream\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""
