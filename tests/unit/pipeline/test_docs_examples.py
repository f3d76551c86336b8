"""The YAML in the docs is valid: every pipeline fragment and every rule condition loads."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from sensorstream.engine.rules import CONDITIONS
from sensorstream.pipeline.spec import parse_spec
from sensorstream.readings import decode_json_lines

ROOT = Path(__file__).parents[3]
MEASUREMENTS = (
    "temperature humidity heart_rate battery steps lat lon pressure vibration rejected count"
)
HEAD = f"""\
name: docs
source: {{type: file, path: readings.ndjson}}
readings:
  measurements: {{{", ".join(f"{m}: float" for m in MEASUREMENTS.split())}}}
  tags: [room, district]
"""
UPSTREAM = """\
  - name: per_minute
    window: {type: tumbling, size: 1m}
    aggregates: [count, mean(temperature), max(temperature)]
"""


def blocks(name: str) -> list[str]:
    text = (ROOT / name).read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)


def fragments(name: str) -> list[tuple[str, str]]:
    """(id, whole pipeline) for each YAML block: a steps list, one step, or rule lines."""
    found: list[tuple[str, str]] = []
    for index, block in enumerate(blocks(name)):
        if block.startswith("steps:"):
            found.append((f"{name}#{index}", HEAD + block))
        elif block.lstrip().startswith("- name:"):
            steps = "steps:\n" + UPSTREAM + textwrap.indent(textwrap.dedent(block), "  ")
            found.append((f"{name}#{index}", HEAD + steps))
        elif block.startswith("rule:"):
            for line_no, line in enumerate(block.splitlines()):
                if line.startswith("rule: "):
                    step = f"  - name: r{line_no}\n    {line}\n"
                    found.append((f"{name}#{index}.{line_no}", HEAD + "steps:\n" + step))
            if not block.startswith("rule: "):  # one rule over several lines
                step = "  - name: r\n" + textwrap.indent(block, "    ")
                found.append((f"{name}#{index}", HEAD + "steps:\n" + step))
    return found


CASES = fragments("docs/rules.md") + [case for case in fragments("README.md") if "rule:" in case[1]]


@pytest.mark.parametrize(("ident", "pipeline"), CASES, ids=[ident for ident, _ in CASES])
def test_every_yaml_example_of_steps_and_rules_in_the_docs_loads(ident: str, pipeline: str) -> None:
    assert yaml.safe_load(pipeline)
    spec = parse_spec(pipeline, origin=ident)
    assert spec.to_plan().steps


def test_the_rules_docs_have_examples_of_each_shape() -> None:
    kinds = {ident.split("#")[1].count(".") for ident, _ in CASES}
    assert len(CASES) >= 15
    assert any(ident.startswith("README") for ident, _ in CASES)
    assert kinds == {0, 1}


def test_every_condition_kind_has_a_section_and_an_example_in_the_rules_docs() -> None:
    text = (ROOT / "docs/rules.md").read_text(encoding="utf-8")
    for kind in CONDITIONS:
        assert f"### `{kind}`" in text, kind
        assert any(re.search(rf"[{{\s-]{kind}:", pipeline) for _, pipeline in CASES), kind


READINGS_BLOCKS = [block for block in blocks("docs/inputs.md") if block.startswith("readings:")]


@pytest.mark.parametrize("block", READINGS_BLOCKS)
def test_every_readings_example_in_the_inputs_docs_loads(block: str) -> None:
    pipeline = f"name: docs\nsource: {{type: file, path: readings.ndjson}}\n{block}"
    assert parse_spec(pipeline, origin="docs/inputs.md").stream().readings.to_format().measurements


def test_the_inputs_docs_example_records_decode_as_the_docs_say() -> None:
    text = (ROOT / "docs/inputs.md").read_text(encoding="utf-8")
    records = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    nested = next(block for block in READINGS_BLOCKS if "latlon" in block)
    fmt = (
        parse_spec(f"name: docs\nsource: {{type: file, path: r.ndjson}}\n{nested}")
        .stream()
        .readings
    )
    decoded = decode_json_lines(
        records[0].encode(), fmt.to_format(), arrived_at=datetime(2024, 5, 12, 3, tzinfo=UTC)
    )
    assert decoded.dead_letters.height == 0
    assert decoded.readings.select("eventType", "coordinates", "city").rows() == [
        ("accessRejected", None, None),
        (None, {"lat": 47.37, "lon": 8.52}, "Zurich"),
    ]
