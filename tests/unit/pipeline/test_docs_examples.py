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


# The joins docs: whole pipelines load as they are; tables, steps and step lists load into
# a pipeline with the streams and tables their examples name.
JOINS_HEAD = """\
name: docs
source: {type: file, path: readings.ndjson}
readings:
  measurements: {temperature: float, heart_rate: float}
  tags: [side]
streams:
  devices:
    source: {type: file, path: devices.ndjson}
    readings:
      measurements: {status: string, loc: latlon}
      tags: [district]
  badges: {source: {type: file, path: badges.ndjson}, readings: {measurements: {badge: string}}}
  doors_events:
    source: {type: file, path: doors.ndjson}
    readings: {measurements: {door: string}}
  a: {source: {type: file, path: a.ndjson}, readings: {measurements: {x: float}}}
  b: {source: {type: file, path: b.ndjson}, readings: {measurements: {y: float}}}
"""
JOINS_TABLES = """\
tables:
  rooms:
    source: {type: file, path: rooms.csv}
    columns: {room_name: string, room: string}
  ranges:
    source: {type: file, path: ranges.csv}
    columns: {low: float, high: float}
"""


def joins_cases() -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    for index, block in enumerate(blocks("docs/joins.md")):
        ident = f"docs/joins.md#{index}"
        if block.startswith("name:"):
            cases.append((ident, block))
        elif block.startswith("tables:"):
            cases.append((ident, JOINS_HEAD + block))
        elif block.startswith("steps:"):  # a relation over rooms the readings carry
            head = JOINS_HEAD.replace("tags: [side]", "tags: [room, side]")
            cases.append((ident, head + JOINS_TABLES + block))
        elif block.lstrip().startswith("- name:"):
            steps = "steps:\n" + textwrap.indent(textwrap.dedent(block), "  ")
            cases.append((ident, JOINS_HEAD + JOINS_TABLES + steps))
    return cases


JOINS = joins_cases()


@pytest.mark.parametrize(("ident", "pipeline"), JOINS, ids=[ident for ident, _ in JOINS])
def test_every_yaml_example_in_the_joins_docs_loads(ident: str, pipeline: str) -> None:
    spec = parse_spec(pipeline, origin=ident)
    assert spec.to_plan().graph.order or spec.tables


def test_the_joins_docs_show_every_kind_of_join() -> None:
    text = "\n".join(pipeline for _, pipeline in JOINS)
    for shape in ("table: rooms", "mode: as_of", "stream:", "window:", "relation:", "delete_when"):
        assert shape in text, shape
