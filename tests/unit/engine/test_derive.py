from __future__ import annotations

import polars as pl
import pytest

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.plan import EnginePlan, EventTime
from sensorstream.engine.steps import StepError
from sensorstream.engine.task import PartitionTask
from sensorstream.engine.windows import TumblingWindow, WindowStep
from sensorstream.testing import run_task
from tests.unit.engine.helpers import batch, rows, s

FAHRENHEIT = DeriveStep(
    "f", "readings", columns=(("value_f", "value * 1.8 + 32"),), where="value >= 0"
)
EVENT_TIME = EventTime(out_of_orderness=s(0), allowed_lateness=s(0), idle_timeout=None)


def plan(*steps: WindowStep | DeriveStep) -> EnginePlan:
    return EnginePlan(("value",), steps, EVENT_TIME)


def test_a_derive_step_adds_columns_and_keeps_the_rows_its_condition_holds_for() -> None:
    task = PartitionTask(
        plan(
            FAHRENHEIT,
            WindowStep(
                "w",
                TumblingWindow(s(10)),
                ("device_id",),
                (Aggregate("max", "value_f"),),
                input="f",
            ),
        )
    )
    task.process(batch(("d1", 1, 10.0), ("d1", 2, -5.0), ("d1", 3, None), ("d1", 4, 20.0)), 0)
    output = task.finish()
    assert rows(output.results["w"], "value_f_max") == [("d1", 0, 10, 68.0)]


def test_readings_a_filter_drops_are_accepted_not_late() -> None:
    window = WindowStep(
        "w", TumblingWindow(s(10)), ("device_id",), (Aggregate("count"),), input="f"
    )
    task = PartitionTask(plan(FAHRENHEIT, window))
    first = task.process(batch(("d1", 1, 1.0), ("d1", 25, 1.0)), 0)
    assert first.accepted is not None
    assert first.accepted.height == 2
    # At watermark 25: a reading at 3 is too late for the window behind the filter; one with
    # a negative value never reaches the window, so it is not late for it.
    second = task.process(batch(("d1", 3, 1.0), ("d1", 4, -1.0)), 0)
    assert second.late_count == 1
    assert second.late is not None
    assert second.late["value"].to_list() == [1.0]
    assert second.accepted is not None
    assert second.accepted["value"].to_list() == [-1.0]


def test_over_results_a_filter_retracts_what_it_no_longer_keeps() -> None:
    windows = WindowStep(
        "w", TumblingWindow(s(10)), ("device_id",), (Aggregate("count"),), emit="updates"
    )
    busy = DeriveStep("busy", "w", where="count >= 2")
    task = PartitionTask(plan(windows, busy))
    first = task.process(batch(("d1", 1, 1.0), ("d1", 2, 1.0)), 0)
    assert first.results["busy"]["_op"].to_list() == ["upsert"]
    second = task.process(batch(("d2", 3, 1.0)), 0)
    assert second.results["busy"]["_op"].to_list() == ["delete"]  # d2 has one reading: dropped


def test_the_derived_columns_feed_the_window_exactly_as_declared_columns_would() -> None:
    derived = DeriveStep("double", "readings", columns=(("twice", "value * 2"),))
    via_derive = plan(
        derived,
        WindowStep(
            "w", TumblingWindow(s(10)), ("device_id",), (Aggregate("sum", "twice"),), input="double"
        ),
    )
    feed = [batch(("d1", 1, 1.5), ("d2", 4, 2.0), ("d1", 12, 3.0)), batch(("d1", 30, 1.0))]
    run = run_task(via_derive, feed)
    totals = rows(run.results()["w"], "twice_sum")
    assert totals == [
        ("d1", 0, 10, 3.0),
        ("d1", 10, 20, 6.0),
        ("d1", 30, 40, 2.0),
        ("d2", 0, 10, 4.0),
    ]


def test_an_expression_that_is_not_sql_is_a_step_error_naming_its_field() -> None:
    with pytest.raises(StepError) as raised:
        DeriveStep("d", "readings", columns=(("f", "value *"),))
    assert (raised.value.step, raised.value.field) == ("d", "derive.f")
    with pytest.raises(StepError, match="declare new columns"):
        DeriveStep("d", "readings")


def test_case_when_and_functions_work_as_in_sql() -> None:
    step = DeriveStep(
        "d",
        "readings",
        columns=(
            ("level", "CASE WHEN value >= 20 THEN 'hot' ELSE 'ok' END"),
            ("size", "abs(value)"),
        ),
    )
    task = PartitionTask(
        plan(
            step,
            WindowStep(
                "w", TumblingWindow(s(10)), ("level",), (Aggregate("max", "size"),), input="d"
            ),
        )
    )
    task.process(batch(("d1", 1, -25.0), ("d2", 2, 30.0), ("d3", 3, 1.0)), 0)
    results = task.finish().results["w"].sort("level")
    assert results.select("level", "size_max").rows() == [("hot", 30.0), ("ok", 25.0)]
    assert isinstance(results["size_max"].dtype, pl.Float64)
