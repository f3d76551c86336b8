from __future__ import annotations

import pytest

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.task import PartitionTask
from sensorstream.engine.windows import HoppingWindow
from sensorstream.errors import ConfigError
from sensorstream.testing import run_task
from tests.unit.engine.helpers import batch, plan, rows, s


def test_reading_falls_in_size_over_slide_windows() -> None:
    run = run_task(plan(HoppingWindow(s(10), s(5))), [batch(("d1", 7, 1.0))])
    assert rows(run.results()["w"], "count") == [("d1", 0, 10, 1), ("d1", 5, 15, 1)]


def test_size_need_not_be_a_multiple_of_the_slide() -> None:
    run = run_task(plan(HoppingWindow(s(5), s(2))), [batch(("d1", 4, 1.0), ("d1", 5, 1.0))])
    assert rows(run.results()["w"], "count") == [
        ("d1", 0, 5, 1),
        ("d1", 2, 7, 2),
        ("d1", 4, 9, 2),
    ]


def test_window_end_is_exclusive() -> None:
    run = run_task(plan(HoppingWindow(s(4), s(2))), [batch(("d1", 4, 1.0))])
    assert rows(run.results()["w"], "count") == [("d1", 2, 6, 1), ("d1", 4, 8, 1)]


def test_reading_final_for_an_old_window_still_counts_in_the_newer_ones() -> None:
    task = PartitionTask(plan(HoppingWindow(s(10), s(5))))
    task.process(batch(("d1", 1, 1.0), ("d1", 11, 1.0)), now_us=0)
    output = task.process(batch(("d1", 7, 1.0)), now_us=0)
    assert output.late_count == 0
    assert output.late is None
    assert rows(task.finish().results["w"], "count") == [("d1", 5, 15, 2), ("d1", 10, 20, 1)]


def test_reading_late_for_every_window_is_late() -> None:
    task = PartitionTask(plan(HoppingWindow(s(10), s(5))))
    task.process(batch(("d1", 1, 1.0), ("d1", 15, 1.0)), now_us=0)
    output = task.process(batch(("d1", 4, 1.0)), now_us=0)
    assert output.late_count == 1


def test_late_reading_within_lateness_corrects_every_window_it_belongs_to() -> None:
    task = PartitionTask(plan(HoppingWindow(s(10), s(5)), allowed_lateness=10))
    task.process(batch(("d1", 6, 1.0), ("d1", 16, 1.0)), now_us=0)
    output = task.process(batch(("d1", 7, 1.0)), now_us=0)
    assert rows(output.results["w"], "count", "revision") == [
        ("d1", 0, 10, 2, 1),
        ("d1", 5, 15, 2, 1),
    ]
    assert rows(task.finish().results["w"], "count") == [("d1", 10, 20, 1), ("d1", 15, 25, 1)]


def test_hopping_aggregates_are_per_window() -> None:
    aggregates = (Aggregate("sum", "value"), Aggregate("max", "value"))
    feed = [batch(("d1", 1, 1.0), ("d1", 6, 2.0), ("d1", 11, 4.0))]
    run = run_task(plan(HoppingWindow(s(10), s(5)), aggregates), feed)
    assert rows(run.results()["w"], "value_sum", "value_max") == [
        ("d1", -5, 5, 1.0, 1.0),
        ("d1", 0, 10, 3.0, 2.0),
        ("d1", 5, 15, 6.0, 4.0),
        ("d1", 10, 20, 4.0, 4.0),
    ]


def test_slide_must_not_exceed_the_size() -> None:
    with pytest.raises(ConfigError, match="must not exceed its size"):
        HoppingWindow(s(5), s(10))


def test_size_and_slide_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="positive size and slide"):
        HoppingWindow(s(5), s(0))
