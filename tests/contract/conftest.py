"""What the contract suites share: a fixed processing clock, a reading format, a YAML round trip.

The suites themselves parametrize over the registries (``Window``, ``SOURCES``, ``SINKS``),
so a new window type, source or sink joins them by being exported.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensorstream.pipeline.spec import PipelineSpec, load_spec
from sensorstream.readings import ReadingFormat
from sensorstream.testing import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    """Processing time that stands still: arrival times (and dead letters) are reproducible."""
    return ManualClock(datetime(2024, 6, 1, tzinfo=UTC))


@pytest.fixture
def reading_format() -> ReadingFormat:
    """Two float measurements and a tag, as the simulator and ``write_dataset`` produce."""
    return ReadingFormat(measurements={"temperature": "float", "humidity": "float"}, tags=("site",))


@pytest.fixture
def spec_round_trip(tmp_path: Path) -> Callable[[PipelineSpec], PipelineSpec]:
    """Return a function that writes a spec to ``pipeline.yaml``, as users keep it, and loads it."""

    def round_trip(spec: PipelineSpec) -> PipelineSpec:
        path = tmp_path / "pipeline.yaml"
        path.write_text(spec.to_yaml())
        return load_spec(path)

    return round_trip
