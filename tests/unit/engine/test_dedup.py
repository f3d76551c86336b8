from __future__ import annotations

from datetime import timedelta

from sensorstream.engine.task import Dedup, EnginePlan, PartitionTask
from sensorstream.engine.windows import HoppingWindow, SessionWindow, TumblingWindow
from sensorstream.testing import ReadingRow, readings_frame, run_task
from tests.unit.engine.helpers import batch, plan, rows, s, us


def duplicates(task: PartitionTask, *batches: tuple[tuple[str, float, float | None], ...]) -> int:
    return sum(task.process(batch(*readings), now_us=0).duplicates for readings in batches)


def test_exact_repeat_is_dropped_and_counted() -> None:
    task = PartitionTask(plan())
    assert duplicates(task, (("d1", 10, 1.0),), (("d1", 10, 1.0),)) == 1


def test_repeat_within_one_batch_is_dropped() -> None:
    task = PartitionTask(plan())
    output = task.process(batch(("d1", 10, 1.0), ("d1", 10, 1.0), ("d1", 10, 1.0)), now_us=0)
    assert output.duplicates == 2
    assert output.accepted is not None
    assert output.accepted.height == 1


def test_same_time_with_another_value_is_not_a_duplicate() -> None:
    task = PartitionTask(plan())
    assert duplicates(task, (("d1", 10, 1.0), ("d1", 10, 2.0), ("d1", 10, None))) == 0


def test_same_time_and_value_from_another_device_is_not_a_duplicate() -> None:
    task = PartitionTask(plan())
    assert duplicates(task, (("d1", 10, 1.0), ("d2", 10, 1.0))) == 0


def test_repeated_nulls_are_duplicates() -> None:
    task = PartitionTask(plan())
    assert duplicates(task, (("d1", 10, None),), (("d1", 10, None),)) == 1


def test_repeat_older_than_the_horizon_is_not_recognised() -> None:
    task = PartitionTask(plan(dedup=Dedup(horizon=s(5))))
    assert duplicates(task, (("d1", 10, 1.0), ("d1", 20, 1.0))) == 0
    # The watermark is 20 s: 15 s is the oldest time still recognised.
    assert duplicates(task, (("d1", 10, 1.0),)) == 0
    assert duplicates(task, (("d1", 15, 1.0),), (("d1", 15, 1.0),)) == 1


def test_state_is_evicted_after_the_horizon() -> None:
    task = PartitionTask(plan(dedup=Dedup(horizon=s(5))))
    task.process(batch(("d1", 10, 1.0), ("d1", 11, 1.0)), now_us=0)
    dedup = task.streams["readings"].dedup
    assert dedup is not None
    assert dedup.seen.height == 2
    task.process(batch(("d1", 16, 1.0)), now_us=0)
    assert dedup.seen["ts"].to_list() == [us(11), us(16)]
    task.finish()
    assert dedup.seen.height == 0


def test_disabled_dedup_keeps_repeats() -> None:
    task = PartitionTask(plan(TumblingWindow(s(10)), dedup=Dedup(enabled=False)))
    output = task.process(batch(("d1", 1, 1.0), ("d1", 1, 1.0)), now_us=0)
    assert output.duplicates == 0
    assert rows(task.finish().results["w"], "count") == [("d1", 0, 10, 2)]


def test_duplicates_reach_no_window() -> None:
    task = PartitionTask(plan(TumblingWindow(s(10))))
    task.process(batch(("d1", 1, 1.0), ("d1", 1, 1.0), ("d1", 2, 1.0)), now_us=0)
    assert rows(task.finish().results["w"], "count") == [("d1", 0, 10, 2)]


def test_message_id_dedup_ignores_values() -> None:
    readings: list[ReadingRow] = [
        {"device_id": "d1", "ts": us(1), "value": 1.0, "message_id": "m1"},
        {"device_id": "d1", "ts": us(2), "value": 2.0, "message_id": "m1"},
        {"device_id": "d1", "ts": us(1), "value": 1.0, "message_id": "m2"},
    ]
    task = PartitionTask(plan(dedup=Dedup(by="message_id")))
    frame = readings_frame(readings, measurements=("value",), tags=("message_id",))
    assert task.process(frame, now_us=0).duplicates == 1


def test_default_horizon_covers_disorder_lateness_and_the_longest_window() -> None:
    engine_plan = plan(TumblingWindow(s(60)), out_of_orderness=5, allowed_lateness=30)
    assert engine_plan.dedup_horizon() == s(5 + 30 + 60)
    assert plan(SessionWindow(s(300))).dedup_horizon() == s(300)
    assert plan(HoppingWindow(s(120), s(60))).dedup_horizon() == s(120)
    assert plan(out_of_orderness=5).dedup_horizon() == s(5)
    assert plan(dedup=Dedup(horizon=timedelta(0))).dedup_horizon() == timedelta(0)


def test_restored_task_still_recognises_repeats() -> None:
    feed = [batch(("d1", 10, 1.0)), batch(("d1", 10, 1.0), ("d1", 11, 1.0))]
    run = run_task(plan(dedup=Dedup(horizon=s(5))), feed, restart_after=1)
    assert run.duplicates == 1


def test_dedup_key_includes_every_measurement() -> None:
    readings: list[ReadingRow] = [
        {"device_id": "d1", "ts": us(1), "a": 1.0, "b": 1.0},
        {"device_id": "d1", "ts": us(1), "a": 1.0, "b": 2.0},
        {"device_id": "d1", "ts": us(1), "a": 1.0, "b": 2.0},
    ]
    task = PartitionTask(EnginePlan(("a", "b")))
    frame = readings_frame(readings, measurements=("a", "b"))
    assert task.process(frame, now_us=0).duplicates == 1
