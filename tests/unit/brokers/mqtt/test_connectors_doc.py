"""docs/connectors.md stays true: its pipeline parses, its tables name every MQTT setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from sensorstream.brokers.mqtt import MqttConnection
from sensorstream.pipeline.spec import parse_spec
from sensorstream.sinks import MqttSinkSettings
from sensorstream.sources import MqttSourceSettings

DOC = Path(__file__).resolve().parents[4] / "docs" / "connectors.md"


def test_the_example_pipeline_parses() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    spec = parse_spec(blocks[0], origin="docs/connectors.md")

    assert isinstance(spec.source, MqttSourceSettings)
    assert any(isinstance(sink, MqttSinkSettings) for sink in spec.sinks)


@pytest.mark.parametrize("model", [MqttConnection, MqttSourceSettings, MqttSinkSettings])
def test_every_setting_has_a_row_in_a_table(model: type[BaseModel]) -> None:
    rows = set(re.findall(r"^\| `(\w+)` \|", DOC.read_text(encoding="utf-8"), re.MULTILINE))

    missing = set(model.model_fields) - rows - {"type"}
    assert not missing, f"docs/connectors.md has no row for {sorted(missing)}"
