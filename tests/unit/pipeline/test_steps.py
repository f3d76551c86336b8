from __future__ import annotations

from datetime import timedelta

import pytest

from sensorstream import Pipeline, TumblingWindow
from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.windows import WindowStep
from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import parse_spec
from sensorstream.sources import SimulatorSourceSettings

GRAPH = """\
name: graph
source: {type: simulator, devices: 3}
readings:
  measurements: {temperature: float}
steps:
  - name: fahrenheit
    derive: {temperature_f: temperature * 1.8 + 32}
    where: temperature > -40
  - name: avg_1m
    input: fahrenheit
    window: {type: tumbling, size: 1m}
    aggregates: [count, mean(temperature_f)]
  - name: avg_1h
    input: avg_1m
    window: {type: tumbling, size: 1h}
    aggregates: [max(temperature_f_mean) as hottest, sum(count) as readings]
"""


def test_steps_read_readings_derive_steps_and_other_windows() -> None:
    plan = parse_spec(GRAPH).to_plan()
    assert [step.name for step in plan.graph.order] == ["fahrenheit", "avg_1m", "avg_1h"]
    fahrenheit, minute, hour = plan.steps
    assert isinstance(fahrenheit, DeriveStep)
    assert fahrenheit.columns == (("temperature_f", "temperature * 1.8 + 32"),)
    assert fahrenheit.where == "temperature > -40"
    assert isinstance(hour, WindowStep)
    assert (minute.input, hour.input) == ("fahrenheit", "avg_1m")


def test_the_graph_round_trips_through_yaml() -> None:
    spec = parse_spec(GRAPH)
    assert parse_spec(spec.to_yaml()) == spec


def test_a_filter_alone_is_a_derive_step() -> None:
    text = GRAPH.replace("    derive: {temperature_f: temperature * 1.8 + 32}\n", "")
    text = text.replace("mean(temperature_f)", "mean(temperature)").replace(
        "max(temperature_f_mean)", "max(temperature_mean)"
    )
    step = parse_spec(text).to_plan().steps[0]
    assert isinstance(step, DeriveStep)
    assert step.columns == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("input: fahrenheit", "input: celsius"),
            "line 10, steps[1].input: no step is called 'celsius'",
        ),
        (
            ("mean(temperature_f)]", "mean(temperature_c)]"),
            "line 12, steps[1].aggregates[1]: 'mean(temperature_c)' reads 'temperature_c', "
            "which step 'fahrenheit' does not have",
        ),
        (
            ("temperature * 1.8 + 32", "temprature * 1.8"),
            "line 7, steps[0].derive.temperature_f: the expression",
        ),
        (
            ("where: temperature > -40", "where: temperature >"),
            "line 8, steps[0].where: cannot read",
        ),
        (
            ("input: avg_1m", "input: avg_1h"),
            "steps[2].input: the steps read each other in a circle",
        ),
        (
            ("    window: {type: tumbling, size: 1m}\n", ""),
            "steps[1]: a step declares what it does: window (with aggregates), derive",
        ),
        (("name: avg_1h", "name: readings"), "steps[2].name: 'readings' names an input stream"),
    ],
)
def test_graph_errors_name_the_step_field_and_line(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_spec(GRAPH.replace(*change), origin="p.yaml")
    assert message in str(raised.value)


def test_the_python_builder_makes_the_same_graph() -> None:
    built = (
        Pipeline(
            "graph",
            source=SimulatorSourceSettings(type="simulator", devices=3),
            measurements={"temperature": "float"},
        )
        .derive(
            "fahrenheit", {"temperature_f": "temperature * 1.8 + 32"}, where="temperature > -40"
        )
        .window(
            "avg_1m",
            TumblingWindow(timedelta(minutes=1)),
            ["count", "mean(temperature_f)"],
            input="fahrenheit",
        )
        .window(
            "avg_1h",
            TumblingWindow(timedelta(hours=1)),
            ["max(temperature_f_mean) as hottest", "sum(count) as readings"],
            input="avg_1m",
        )
    )
    assert built.spec().steps == parse_spec(GRAPH).steps
