"""Threshold levels in YAML: ordered by their bounds, not by how the mapping is written."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sensorstream.errors import ConfigError
from sensorstream.pipeline.rules import ThresholdSpec


@pytest.mark.parametrize(
    ("levels", "direction", "expected"),
    [
        ({"critical": 31, "warning": 28}, "above", (("warning", 28), ("critical", 31))),
        ({"warning": 28, "critical": 31}, "above", (("warning", 28), ("critical", 31))),
        ({"critical": 5, "warning": 20}, "below", (("warning", 20), ("critical", 5))),
    ],
)
def test_levels_are_ordered_by_their_bounds(
    levels: dict[str, float], direction: str, expected: tuple[tuple[str, float], ...]
) -> None:
    spec = ThresholdSpec.model_validate({"threshold": "t", direction: levels})
    condition = spec.to_condition()
    assert condition.bounds == expected  # type: ignore[attr-defined]
    assert condition.severities == tuple(name for name, _ in expected)


def test_two_levels_at_the_same_bound_are_an_error() -> None:
    with pytest.raises((ConfigError, ValidationError), match="must rise"):
        ThresholdSpec.model_validate(
            {"threshold": "t", "above": {"warning": 5, "critical": 5}}
        ).to_condition()
