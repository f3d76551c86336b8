"""Stream joins and relations as YAML writes them: models, declarations, round trips, docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.joins.streams import StreamJoinStep
from sensorstream.engine.outputs import OutputKind
from sensorstream.engine.plan import EnginePlan
from sensorstream.engine.relation import RelationStep
from sensorstream.engine.steps import StepError
from sensorstream.engine.windows import TumblingWindow
from sensorstream.pipeline.spec import WindowStepSpec, YamlLoader
from sensorstream.pipeline.stream_joins import RelationStepSpec, StreamJoinStepSpec
from sensorstream.readings import ReadingFormat
from tests.contract.join_samples import JOIN_SAMPLES, join_yaml
from tests.unit.engine.helpers import s

ROOT = Path(__file__).parents[3]


def load(text: str) -> Any:
    """YAML as a pipeline file is read (``on`` is a key, not true)."""
    return yaml.load(text, Loader=YamlLoader)


MINUTE = {"type": "tumbling", "size": "1m"}
EXAMPLES = """\
- name: badge_and_door
  input: badges
  join: {stream: doors_events, on: [device_id], within: 10s, how: inner}
- name: same_minute
  input: a
  join: {stream: b, on: [device_id], window: {type: tumbling, size: 1m}}
- name: in_out
  relation: {left: avg_1m, right: avg_1m, left_where: "side = 'IN'",
             right_where: "side = 'OUT'", value: temperature_mean, key: [room]}
"""


def model_of(step: dict[str, Any]) -> StreamJoinStepSpec | RelationStepSpec:
    """The model a step mapping declares (what the step union's discriminator will do)."""
    if "relation" in step:
        return RelationStepSpec.model_validate(step)
    return StreamJoinStepSpec.model_validate(step)


def test_the_examples_become_the_engine_declarations() -> None:
    steps = [model_of(step).to_step() for step in load(EXAMPLES)]
    assert steps == [
        StreamJoinStep("badge_and_door", "badges", "doors_events", ("device_id",), s(10)),
        StreamJoinStep("same_minute", "a", "b", ("device_id",), window=TumblingWindow(s(60))),
        RelationStep(
            "in_out",
            "avg_1m",
            "avg_1m",
            "temperature_mean",
            ("room",),
            left_where="side = 'IN'",
            right_where="side = 'OUT'",
        ),
    ]


@pytest.mark.parametrize("step", load(EXAMPLES), ids=lambda step: step["name"])
def test_a_model_round_trips_through_yaml(step: dict[str, Any]) -> None:
    model = model_of(step)
    dumped = load(yaml.safe_dump(model.model_dump(mode="json", exclude_defaults=True)))
    again = model_of(dumped)
    assert again == model
    assert again.to_step() == model.to_step()


def test_every_option_of_a_join_reaches_the_declaration() -> None:
    model = StreamJoinStepSpec.model_validate(
        {
            "name": "j",
            "join": {
                "stream": "doors",
                "on": ["device_id", "room"],
                "within": "1500ms",
                "how": "left",
                "suffix": "_door",
            },
        }
    )
    assert model.to_step() == StreamJoinStep(
        "j", "readings", "doors", ("device_id", "room"), s(1.5), "left", None, "_door"
    )


@pytest.mark.parametrize(
    ("join", "words"),
    [
        ({"stream": "b", "on": ["device_id"], "within": "soon"}, "invalid duration"),
        ({"stream": "b", "on": ["device_id"], "within": "1s", "how": "outer"}, "'inner'"),
        ({"stream": "b", "on": ["device_id"], "within": "1s", "by": "x"}, "Extra inputs"),
        ({"stream": "b", "on": ["device_id"], "window": {"type": "tumbling"}}, "needs 'size'"),
        ({"on": ["device_id"], "within": "1s"}, "stream"),
    ],
)
def test_a_join_yaml_cannot_read_says_why(join: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        StreamJoinStepSpec.model_validate({"name": "j", "join": join})


@pytest.mark.parametrize(
    ("join", "field"),
    [
        ({"stream": "b", "on": ["device_id"]}, "join.within"),
        (
            {
                "stream": "b",
                "on": ["d"],
                "within": "1s",
                "window": {"type": "tumbling", "size": "1m"},
            },
            "join.within",
        ),
        (
            {"stream": "b", "on": ["device_id"], "window": {"type": "session", "gap": "1m"}},
            "join.window",
        ),
        ({"stream": "b", "on": [], "within": "1s"}, "join.on"),
    ],
)
def test_a_join_the_engine_refuses_names_its_yaml_field(join: dict[str, Any], field: str) -> None:
    model = StreamJoinStepSpec.model_validate({"name": "j", "join": join})
    with pytest.raises(StepError) as raised:
        model.to_step()
    assert raised.value.field == field


def test_a_relation_without_a_key_compares_per_device_like_a_window() -> None:
    model = RelationStepSpec.model_validate(
        {"name": "r", "relation": {"left": "a", "right": "b", "value": "count"}}
    )
    assert model.to_step().key == ("device_id",)
    with pytest.raises(ValidationError, match="Extra inputs"):
        RelationStepSpec.model_validate(
            {"name": "r", "input": "a", "relation": {"left": "a", "right": "b", "value": "v"}}
        )


def test_joins_and_a_relation_fit_in_a_graph_over_readings() -> None:
    columns = ReadingFormat(
        measurements={"temperature": "float"}, tags=("room", "side")
    ).canonical_schema()
    window = WindowStepSpec.model_validate(
        {
            "name": "avg_1m",
            "window": {"type": "tumbling", "size": "1m"},
            "key": ["room", "side"],
            "aggregates": ["mean(temperature)"],
        }
    )
    steps = (
        DeriveStep("badges", "readings", where="side = 'IN'"),
        DeriveStep("doors", "readings", where="side = 'OUT'"),
        StreamJoinStepSpec.model_validate(
            {
                "name": "pairs",
                "input": "badges",
                "join": {"stream": "doors", "on": ["device_id"], "within": "10s"},
            }
        ).to_step(),
        window.to_step(),
        model_of(load(EXAMPLES)[2]).to_step(),
    )
    graph = EnginePlan(("temperature",), steps, columns=columns).graph
    pairs, relation = graph.outputs["pairs"], graph.outputs["in_out"]
    assert pairs.kind is OutputKind.STREAM
    assert {"temperature", "temperature_right", "ts_right", "room_right"} <= set(
        pairs.columns or {}
    )
    assert relation.kind is OutputKind.RESULTS
    assert relation.window == TumblingWindow(s(60))
    assert graph.shapes_of(steps[-1]) == (graph.outputs["avg_1m"], graph.outputs["avg_1m"])


# -- the docs ---------------------------------------------------------------------------------


def doc_steps() -> list[tuple[str, dict[str, Any]]]:
    """Every stream join and relation step in docs/joins.md's YAML blocks."""
    text = (ROOT / "docs/joins.md").read_text(encoding="utf-8")
    found: list[tuple[str, dict[str, Any]]] = []
    for index, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)):
        loaded = load(block)
        steps = loaded.get("steps", []) if isinstance(loaded, dict) else loaded
        for step in steps or []:
            joined = isinstance(step.get("join"), dict) and "stream" in step["join"]
            if joined or "relation" in step:
                found.append((f"joins.md#{index}:{step['name']}", step))
    return found


DOCS = doc_steps()


def test_the_joins_docs_have_examples_of_each_kind() -> None:
    kinds = {("window" in step["join"]) if "join" in step else "relation" for _, step in DOCS}
    assert kinds == {False, True, "relation"}


@pytest.mark.parametrize(("ident", "step"), DOCS, ids=[ident for ident, _ in DOCS])
def test_every_stream_join_and_relation_in_the_docs_loads(ident: str, step: dict[str, Any]) -> None:
    assert model_of(step).to_step().name == step["name"], ident


def test_the_contract_samples_round_trip_through_their_models() -> None:
    joins = [
        step
        for graphs in JOIN_SAMPLES.values()
        for graph in graphs
        for step in graph
        if isinstance(step, StreamJoinStep | RelationStep)
    ]
    assert len(joins) == 5
    for step in joins:
        declared = join_yaml(step)
        assert declared is not None
        dumped = load(yaml.safe_dump(model_of(declared).model_dump(mode="json")))
        assert model_of(dumped).to_step() == step
