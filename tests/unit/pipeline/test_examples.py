from __future__ import annotations

from pathlib import Path

import pytest

from sensorstream.pipeline.spec import load_spec

EXAMPLES = sorted((Path(__file__).parents[3] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_pipeline_is_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.to_plan().steps


def test_there_are_examples() -> None:
    assert EXAMPLES
