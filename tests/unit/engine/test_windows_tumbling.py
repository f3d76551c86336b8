from __future__ import annotations

import math

import pytest

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.task import PartitionTask
from sensorstream.engine.windows import TumblingWindow, WindowOperator
from sensorstream.errors import ConfigError
from sensorstream.testing import run_task
from tests.unit.engine.helpers import batch, plan, rows, s

TEN_SECONDS = TumblingWindow(s(10))


def test_each_reading_falls_in_exactly_one_window() -> None:
    run = run_task(
        plan(TEN_SECONDS), [batch(("d1", 0, 1.0), ("d1", 9.999999, 1.0), ("d1", 10, 1.0))]
    )
    assert rows(run.results()["w"], "count") == [("d1", 0, 10, 2), ("d1", 10, 20, 1)]


def test_windows_are_kept_per_key() -> None:
    run = run_task(plan(TEN_SECONDS), [batch(("d1", 1, 1.0), ("d2", 2, 1.0), ("d1", 3, 1.0))])
    assert rows(run.results()["w"], "count") == [("d1", 0, 10, 2), ("d2", 0, 10, 1)]


def test_window_is_emitted_once_the_watermark_passes_its_end() -> None:
    task = PartitionTask(plan(TEN_SECONDS, out_of_orderness=2))
    assert task.process(batch(("d1", 1, 1.0), ("d1", 11, 1.0)), now_us=0).results == {}
    output = task.process(batch(("d1", 12, 1.0)), now_us=0)
    assert rows(output.results["w"], "count", "revision", "final") == [("d1", 0, 10, 1, 0, True)]


def test_late_reading_within_lateness_corrects_the_window() -> None:
    task = PartitionTask(plan(TEN_SECONDS, allowed_lateness=5))
    task.process(batch(("d1", 1, 1.0), ("d1", 12, 1.0)), now_us=0)
    output = task.process(batch(("d1", 2, 3.0)), now_us=0)
    assert output.late_count == 0
    assert rows(output.results["w"], "count", "revision") == [("d1", 0, 10, 2, 1)]


def test_reading_after_the_lateness_is_late_and_counted() -> None:
    task = PartitionTask(plan(TEN_SECONDS, allowed_lateness=5))
    task.process(batch(("d1", 1, 1.0), ("d1", 15, 1.0)), now_us=0)
    output = task.process(batch(("d1", 2, 3.0)), now_us=0)
    assert output.late_count == 1
    assert output.late is not None
    assert output.late["late_for"].to_list() == ["w"]
    assert output.results == {}


def test_state_is_evicted_after_lateness() -> None:
    task = PartitionTask(plan(TEN_SECONDS, allowed_lateness=5))
    task.process(batch(("d1", 1, 1.0), ("d2", 14, 1.0)), now_us=0)
    [operator] = task.operators.values()
    assert isinstance(operator, WindowOperator)
    assert operator.state is not None
    assert operator.state.height == 2
    task.process(batch(("d2", 15, 1.0)), now_us=0)
    assert operator.state["device_id"].to_list() == ["d2"]


def test_offset_shifts_the_grid() -> None:
    run = run_task(
        plan(TumblingWindow(s(10), offset=s(3))), [batch(("d1", 2, 1.0), ("d1", 3, 1.0))]
    )
    assert rows(run.results()["w"], "count") == [("d1", -7, 3, 1), ("d1", 3, 13, 1)]


def test_emit_updates_shows_every_change_then_the_final_result() -> None:
    task = PartitionTask(plan(TEN_SECONDS, emit="updates"))
    first = task.process(batch(("d1", 1, 1.0)), now_us=0)
    second = task.process(batch(("d1", 2, 1.0)), now_us=0)
    closing = task.process(batch(("d1", 10, 1.0)), now_us=0)
    assert rows(first.results["w"], "count", "final") == [("d1", 0, 10, 1, False)]
    assert rows(second.results["w"], "count", "final") == [("d1", 0, 10, 2, False)]
    assert rows(closing.results["w"], "count", "final") == [
        ("d1", 0, 10, 2, True),
        ("d1", 10, 20, 1, False),
    ]


def test_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="size must be positive"):
        TumblingWindow(s(0))


# -- aggregates ---------------------------------------------------------------------------

FUNCTIONS = ("count", "sum", "mean", "min", "max", "first", "last", "variance", "stddev", "p50")
EVERY_AGGREGATE = (Aggregate("count"), *(Aggregate(function, "value") for function in FUNCTIONS))


def aggregates_of(*readings: tuple[str, float, float | None]) -> dict[str, object]:
    run = run_task(plan(TEN_SECONDS, EVERY_AGGREGATE), [batch(*readings)])
    [result] = run.results()["w"].to_dicts()
    return result


def test_every_aggregate_ignores_nulls() -> None:
    result = aggregates_of(("d1", 3, 4.0), ("d1", 1, None), ("d1", 2, 2.0), ("d1", 4, 6.0))
    assert result["count"] == 4
    assert result["value_count"] == 3
    assert result["value_sum"] == 12.0
    assert result["value_mean"] == 4.0
    assert (result["value_min"], result["value_max"]) == (2.0, 6.0)
    assert (result["value_first"], result["value_last"]) == (2.0, 6.0)
    assert result["value_variance"] == pytest.approx(4.0)
    assert result["value_stddev"] == pytest.approx(2.0)
    assert result["value_p50"] == pytest.approx(4.0, rel=0.0101)


def test_first_and_last_follow_event_time_not_arrival() -> None:
    result = aggregates_of(("d1", 5, 5.0), ("d1", 1, 1.0), ("d1", 9, 9.0), ("d1", 3, 3.0))
    assert (result["value_first"], result["value_last"]) == (1.0, 9.0)


def test_first_and_last_ties_go_to_the_first_and_last_arrival() -> None:
    result = aggregates_of(("d1", 1, 10.0), ("d1", 1, 11.0), ("d1", 1, 12.0))
    assert (result["value_first"], result["value_last"]) == (10.0, 12.0)


def test_first_and_last_ties_across_batches_go_by_arrival() -> None:
    feed = [batch(("d1", 1, 10.0), ("d1", 5, 50.0)), batch(("d1", 1, 11.0), ("d1", 5, 51.0))]
    run = run_task(plan(TEN_SECONDS, EVERY_AGGREGATE, out_of_orderness=10), feed)
    [result] = run.results()["w"].to_dicts()
    assert (result["value_first"], result["value_last"]) == (10.0, 51.0)


def test_variance_and_stddev_need_two_values() -> None:
    result = aggregates_of(("d1", 1, 5.0), ("d1", 2, None))
    assert result["value_variance"] is None
    assert result["value_stddev"] is None
    assert result["value_mean"] == 5.0


def test_window_without_values_has_null_aggregates_and_zero_counts() -> None:
    result = aggregates_of(("d1", 1, None), ("d1", 2, None))
    assert (result["count"], result["value_count"]) == (2, 0)
    for name in ("sum", "mean", "min", "max", "first", "last", "variance", "stddev", "p50"):
        assert result[f"value_{name}"] is None, name


def test_variance_survives_a_batch_without_values() -> None:
    feed = [batch(("d1", 1, None)), batch(("d1", 2, 1.0), ("d1", 3, 3.0))]
    run = run_task(plan(TEN_SECONDS, EVERY_AGGREGATE, out_of_orderness=10), feed)
    [result] = run.results()["w"].to_dicts()
    assert result["value_variance"] == pytest.approx(2.0)
    assert result["value_stddev"] == pytest.approx(math.sqrt(2.0))


def test_aggregates_merge_across_batches_like_one_batch() -> None:
    readings = [("d1", float(i % 10), float(i * i % 17)) for i in range(30)]
    split = [batch(*readings[:7]), batch(*readings[7:19]), batch(*readings[19:])]
    engine_plan = plan(TEN_SECONDS, EVERY_AGGREGATE, out_of_orderness=10)
    whole, pieces = run_task(engine_plan, [batch(*readings)]), run_task(engine_plan, split)
    values = [a.name for a in EVERY_AGGREGATE]
    [expected] = whole.results()["w"].select(values).to_dicts()
    [actual] = pieces.results()["w"].select(values).to_dicts()
    assert actual == pytest.approx(expected)
