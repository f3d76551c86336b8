from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.task import EnginePlan, EventTime, PartitionTask
from sensorstream.engine.windows import (
    HoppingWindow,
    SessionWindow,
    TumblingWindow,
    WindowOperator,
    WindowStep,
)
from sensorstream.errors import ConfigError
from sensorstream.testing import TaskRun, Tick, reading_streams, readings_frame, run_task
from tests.unit.engine.helpers import batch, plan, rows, s, us

AGGREGATES = (
    Aggregate("count"),
    Aggregate("mean", "value"),
    Aggregate("first", "value"),
    Aggregate("p90", "value"),
)
TWO_STEPS = EnginePlan(
    ("value",),
    (
        WindowStep("fast", TumblingWindow(s(10)), ("device_id",), AGGREGATES),
        WindowStep("slow", SessionWindow(s(60)), ("device_id",), AGGREGATES),
    ),
    EventTime(out_of_orderness=s(2), allowed_lateness=s(5), idle_timeout=None),
)
STREAM = [
    ("d1", 1, 1.0),
    ("d2", 3, 2.0),
    ("d1", 12, None),
    ("d1", 12, None),
    ("d2", 2, 5.0),
    ("d1", 30, 7.0),
    ("d2", 4, 1.0),
    ("d1", 31, 2.5),
    ("d2", 95, 3.0),
    ("d1", 40, 4.0),
    ("d1", 29, 6.0),
    ("d2", 200, 8.0),
    ("d1", 150, 1.0),
    ("d1", 5, 1.0),
]


def results(run: TaskRun) -> dict[str, list[tuple[object, ...]]]:
    """Final results per step; floats to 12 digits (Polars' pow may differ in the last bit)."""
    return {
        name: [
            tuple(float(f"{v:.12g}") if isinstance(v, float) else v for v in row)
            for row in rows(frame, *(a.name for a in AGGREGATES))
        ]
        for name, frame in run.results().items()
    }


def test_every_reading_is_classified_exactly_once() -> None:
    run = run_task(TWO_STEPS, [batch(*STREAM)])
    assert run.accepted is not None
    assert run.accepted.height + run.duplicates + run.late_count == len(STREAM)
    assert (run.duplicates, run.late_count) == (1, 1)


@settings(deadline=None)
@given(stream=reading_streams(measurements=("value",), tags={}, max_readings=15))
def test_every_reading_of_any_stream_is_classified_exactly_once(
    stream: list[dict[str, str | int | float | None]],
) -> None:
    run = run_task(TWO_STEPS, [readings_frame(stream, measurements=("value",))])
    assert run.accepted is not None
    assert run.accepted.height + run.duplicates + run.late_count == len(stream)


def test_late_for_names_every_step_the_reading_missed() -> None:
    task = PartitionTask(TWO_STEPS)
    task.process(batch(("d1", 1, 1.0), ("d1", 100, 1.0)), now_us=0)
    # Watermark 98 s: 50 s is too late for its 10 s window, not for a 60 s session.
    output = task.process(batch(("d1", 50, 1.0), ("d1", 2, 1.0)), now_us=0)
    assert output.late is not None
    assert output.late.select(pl.col("ts").dt.epoch("s"), "late_for").rows() == [
        (50, "fast"),
        (2, "fast,slow"),
    ]
    assert output.late_count == 1
    assert output.accepted is not None
    assert output.accepted["ts"].dt.epoch("s").to_list() == [50]


def test_results_are_reported_per_step() -> None:
    run = run_task(TWO_STEPS, [batch(("d1", 1, 1.0))])
    assert results(run) == {
        "fast": [("d1", 0, 10, 1, 1.0, 1.0, pytest.approx(1.0, rel=0.0101))],
        "slow": [("d1", 1, 61, 1, 1.0, 1.0, pytest.approx(1.0, rel=0.0101))],
    }


def test_idle_partition_closes_its_windows_after_idle_timeout() -> None:
    task = PartitionTask(plan(TumblingWindow(s(10)), out_of_orderness=5, idle_timeout=30))
    assert task.process(batch(("d1", 1, 1.0)), now_us=us(1000)).results == {}
    assert task.tick(us(1029)).results == {}
    output = task.tick(us(1030))  # watermark: 1 - 5 + 30 = 26 s
    assert rows(output.results["w"], "count") == [("d1", 0, 10, 1)]


def test_idle_timeout_is_measured_from_the_last_batch() -> None:
    feed: list[pl.DataFrame | Tick] = [
        batch(("d1", 1, 1.0)),
        Tick(us(20)),
        batch(("d2", 2, 1.0)),
        Tick(us(45)),
    ]
    run = run_task(plan(TumblingWindow(s(10)), idle_timeout=30), feed, finish=False)
    assert run.changes("w") == []
    feed.append(Tick(us(50)))
    run = run_task(plan(TumblingWindow(s(10)), idle_timeout=30), feed, finish=False)
    assert rows(run.results()["w"], "count") == [("d1", 0, 10, 1), ("d2", 0, 10, 1)]


def test_finish_closes_every_window() -> None:
    task = PartitionTask(TWO_STEPS)
    task.process(batch(("d1", 1, 1.0), ("d2", 50, 2.0)), now_us=0)
    output = task.finish()
    assert rows(output.results["fast"], "count") == [("d2", 50, 60, 1)]
    assert rows(output.results["slow"], "count") == [("d1", 1, 61, 1), ("d2", 50, 110, 1)]
    operators = list(task.operators.values())
    assert all(isinstance(operator, WindowOperator) for operator in operators)
    assert all(
        operator.state is None or operator.state.height == 0
        for operator in operators
        if isinstance(operator, WindowOperator)
    )


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_batch_split_does_not_change_results(cut: int) -> None:
    whole = run_task(TWO_STEPS, [batch(*STREAM)])
    split = run_task(TWO_STEPS, [batch(*STREAM[:cut]), batch(*STREAM[cut:])])
    assert results(split) == results(whole)
    assert (split.duplicates, split.late_count) == (whole.duplicates, whole.late_count)


@pytest.mark.parametrize("restart_after", range(len(STREAM) + 1))
def test_restore_mid_stream_gives_same_results(restart_after: int) -> None:
    one_by_one = [batch(reading) for reading in STREAM]
    uninterrupted = run_task(TWO_STEPS, one_by_one)
    restored = run_task(TWO_STEPS, one_by_one, restart_after=restart_after)
    assert results(restored) == results(uninterrupted)
    assert (restored.duplicates, restored.late_count) == (
        uninterrupted.duplicates,
        uninterrupted.late_count,
    )


def test_snapshot_is_frames_and_json_metadata() -> None:
    task = PartitionTask(TWO_STEPS)
    task.process(batch(*STREAM[:6]), now_us=0)
    state = task.snapshot()
    assert json.loads(json.dumps(state.meta)) == state.meta
    assert {"dedup:readings", "fast/windows", "slow/windows", "fast/sketch", "slow/sketch"} <= set(
        state.frames
    )


def test_the_input_is_not_mutated() -> None:
    frame = batch(*STREAM)
    before = frame.clone()
    run_task(TWO_STEPS, [frame])
    assert frame.equals(before)
    assert frame.columns == before.columns


def test_empty_batches_are_fine() -> None:
    task = PartitionTask(TWO_STEPS)
    output = task.process(batch(), now_us=0)
    assert (output.duplicates, output.late_count, output.results) == (0, 0, {})
    task.process(batch(("d1", 1, 1.0)), now_us=0)
    assert task.process(batch(), now_us=0).results == {}


def test_a_plan_without_windows_only_deduplicates() -> None:
    run = run_task(plan(), [batch(("d1", 1, 1.0), ("d1", 1, 1.0), ("d1", 0, 1.0))])
    assert (run.duplicates, run.late_count) == (1, 0)
    assert run.accepted is not None
    assert run.accepted.height == 2


def test_hopping_and_tumbling_steps_share_one_pass() -> None:
    two = EnginePlan(
        ("value",),
        (
            WindowStep("tumbling", TumblingWindow(s(10)), ("device_id",), AGGREGATES),
            WindowStep("hopping", HoppingWindow(s(10), s(5)), ("device_id",), AGGREGATES),
        ),
    )
    run = run_task(two, [batch(("d1", 7, 1.0))])
    assert rows(run.results()["tumbling"], "count") == [("d1", 0, 10, 1)]
    assert rows(run.results()["hopping"], "count") == [("d1", 0, 10, 1), ("d1", 5, 15, 1)]


@pytest.mark.parametrize(
    "event_time",
    [{"out_of_orderness": s(-1)}, {"allowed_lateness": s(-1)}],
)
def test_negative_durations_are_rejected(event_time: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="must not be negative"):
        EventTime(**event_time)  # type: ignore[arg-type]
