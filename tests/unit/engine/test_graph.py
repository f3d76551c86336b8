from __future__ import annotations

import polars as pl
import pytest

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.outputs import OutputKind
from sensorstream.engine.plan import EnginePlan
from sensorstream.engine.steps import StepError
from sensorstream.engine.windows import SessionWindow, TumblingWindow, WindowStep
from sensorstream.readings import ReadingFormat
from tests.unit.engine.helpers import s

COLUMNS = ReadingFormat(
    measurements={"temperature": "float", "humidity": "float"}, tags=("room",)
).canonical_schema()


def window(name: str, source: str = "readings", **options: object) -> WindowStep:
    aggregates = options.pop("aggregates", (Aggregate("mean", "temperature"),))
    key = options.pop("key", ("device_id",))
    kind = options.pop("window", TumblingWindow(s(60)))
    return WindowStep(name, kind, key, aggregates, input=source)  # type: ignore[arg-type]


def graph_of(*steps: WindowStep | DeriveStep) -> list[str]:
    plan = EnginePlan(("temperature", "humidity"), steps, columns=COLUMNS)
    return [step.name for step in plan.graph.order]


def failure(*steps: WindowStep | DeriveStep) -> StepError:
    with pytest.raises(StepError) as raised:
        graph_of(*steps)
    return raised.value


def test_steps_run_after_the_steps_they_read_whatever_order_they_are_declared_in() -> None:
    hourly = window("hourly", "minutes", aggregates=(Aggregate("max", "temperature_mean"),))
    minutes = window("minutes", "fahrenheit")
    fahrenheit = DeriveStep("fahrenheit", "readings", columns=(("f", "temperature * 1.8"),))
    assert graph_of(hourly, minutes, fahrenheit) == ["fahrenheit", "minutes", "hourly"]


def test_an_unknown_input_names_the_step_and_the_steps_there_are() -> None:
    error = failure(window("a"), window("b", "minuets"))
    assert (error.step, error.field) == ("b", "input")
    assert "'minuets'" in error.message
    assert "readings, a" in error.message


def test_steps_reading_each_other_in_a_circle_are_refused() -> None:
    error = failure(
        DeriveStep("a", "c", columns=(("x", "temperature"),)),
        DeriveStep("b", "a", columns=(("y", "temperature"),)),
        DeriveStep("c", "b", columns=(("z", "temperature"),)),
    )
    assert error.field == "input"
    assert "circle: a -> c -> b -> a" in error.message


def test_two_steps_of_one_name_and_a_step_called_readings_are_refused() -> None:
    assert failure(window("a"), window("a")).field == "name"
    assert failure(window("readings")).field == "name"


def test_a_key_or_measurement_the_input_lacks_names_its_field() -> None:
    error = failure(window("a", key=("floor",)))
    assert (error.field, "'floor'" in error.message) == ("key[0]", True)
    error = failure(window("a", aggregates=(Aggregate("count"), Aggregate("max", "pressure"))))
    assert error.field == "aggregates[1]"


def test_a_window_over_results_reads_their_outputs_not_the_readings() -> None:
    minutes = window("minutes")
    assert graph_of(
        minutes, window("h", "minutes", aggregates=(Aggregate("max", "temperature_mean"),))
    )
    error = failure(minutes, window("h", "minutes", aggregates=(Aggregate("max", "humidity"),)))
    assert error.field == "aggregates[0]"
    assert "temperature_mean" in error.message  # what it could read


def test_a_session_window_does_not_read_results() -> None:
    error = failure(window("minutes"), window("s", "minutes", window=SessionWindow(s(30))))
    assert error.field == "window"


def test_a_derive_expression_naming_an_unknown_column_names_its_field() -> None:
    error = failure(DeriveStep("d", "readings", columns=(("f", "temprature * 1.8"),)))
    assert (error.field, "'temprature'" in error.message) == ("derive.f", True)
    error = failure(DeriveStep("d", "readings", where="humidty > 3"))
    assert error.field == "where"


def test_what_each_step_emits_is_known_before_it_runs() -> None:
    plan = EnginePlan(
        ("temperature",),
        (
            DeriveStep("f", "readings", columns=(("f", "temperature * 1.8 + 32"),)),
            window("m", "f", aggregates=(Aggregate("count"), Aggregate("max", "f"))),
        ),
        columns=COLUMNS,
    )
    outputs = plan.graph.outputs
    assert outputs["f"].kind is OutputKind.STREAM
    assert outputs["f"].columns is not None
    assert outputs["f"].columns["f"] == pl.Float64()
    assert outputs["m"].kind is OutputKind.RESULTS
    assert outputs["m"].key == ("device_id",)
    assert {"count", "f_max", "window_start", "revision"} <= set(outputs["m"].columns or {})


def test_results_know_their_window_through_a_derive_step() -> None:
    plan = EnginePlan(
        ("temperature",),
        (window("m"), DeriveStep("warm", "m", where="temperature_mean > 20")),
        columns=COLUMNS,
    )
    outputs = plan.graph.outputs
    assert outputs["m"].window == TumblingWindow(s(60))
    assert outputs["warm"].window == TumblingWindow(s(60))
    assert outputs["readings"].window is None


def test_several_partitions_need_every_grouping_step_keyed_by_device() -> None:
    by_room = window("rooms", key=("room",))
    plan = EnginePlan(("temperature",), (window("devices"), by_room), columns=COLUMNS)
    plan.check_partitioning(1)
    with pytest.raises(StepError) as raised:
        plan.check_partitioning(4)
    assert (raised.value.step, raised.value.field) == ("rooms", "key")
    assert "repartition" in raised.value.message
    EnginePlan(("temperature",), (window("devices"),), columns=COLUMNS).check_partitioning(4)
