from __future__ import annotations

import polars as pl
import pytest

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.task import PartitionTask
from sensorstream.engine.windows import SessionWindow, WindowOperator
from sensorstream.errors import ConfigError
from sensorstream.testing import run_task
from tests.unit.engine.helpers import batch, plan, rows, s

FIVE_SECONDS = SessionWindow(s(5))


def test_readings_closer_than_the_gap_form_one_session() -> None:
    run = run_task(plan(FIVE_SECONDS), [batch(("d1", 0, 1.0), ("d1", 3, 1.0), ("d1", 7, 1.0))])
    assert rows(run.results()["w"], "count") == [("d1", 0, 12, 3)]


def test_a_silence_longer_than_the_gap_ends_the_session() -> None:
    run = run_task(plan(FIVE_SECONDS), [batch(("d1", 0, 1.0), ("d1", 5.5, 1.0))])
    assert rows(run.results()["w"], "count") == [("d1", 0, 5, 1), ("d1", 5.5, 10.5, 1)]


def test_touching_sessions_merge() -> None:
    run = run_task(plan(FIVE_SECONDS), [batch(("d1", 0, 1.0), ("d1", 5, 1.0))])
    assert rows(run.results()["w"], "count") == [("d1", 0, 10, 2)]


def test_sessions_are_kept_per_key() -> None:
    run = run_task(plan(FIVE_SECONDS), [batch(("d1", 0, 1.0), ("d2", 3, 1.0))])
    assert rows(run.results()["w"], "count") == [("d1", 0, 5, 1), ("d2", 3, 8, 1)]


def test_sessions_without_a_key_span_every_device() -> None:
    run = run_task(plan(FIVE_SECONDS, key=()), [batch(("d1", 0, 1.0), ("d2", 3, 1.0))])
    assert rows(run.results()["w"], "count") == [(0, 8, 2)]


def test_session_is_emitted_once_the_watermark_passes_its_end() -> None:
    task = PartitionTask(plan(FIVE_SECONDS))
    assert task.process(batch(("d1", 0, 1.0), ("d1", 4.5, 1.0)), now_us=0).results == {}
    output = task.process(batch(("d1", 9.5, 1.0)), now_us=0)
    assert output.results == {}  # 9.5 s extends the session to 14.5 s: still open
    output = task.process(batch(("d2", 14.5, 1.0)), now_us=0)
    assert rows(output.results["w"], "count") == [("d1", 0, 14.5, 3)]


def test_late_reading_bridging_two_sessions_merges_them_and_retracts_the_later_start() -> None:
    task = PartitionTask(plan(FIVE_SECONDS, allowed_lateness=30))
    first = task.process(batch(("d1", 0, 1.0), ("d1", 8, 1.0), ("d2", 30, 1.0)), now_us=0)
    assert rows(first.results["w"], "count") == [("d1", 0, 5, 1), ("d1", 8, 13, 1)]
    output = task.process(batch(("d1", 4, 1.0)), now_us=0)
    changes = output.results["w"]
    deleted = changes.filter(pl.col("_op") == "delete")
    assert deleted.select("device_id", pl.col("window_start").dt.epoch("s")).rows() == [("d1", 8)]
    upserted = output.results["w"].filter(pl.col("_op") == "upsert")
    assert rows(upserted, "count") == [("d1", 0, 13, 3)]
    run = run_task(
        plan(FIVE_SECONDS, allowed_lateness=30),
        [batch(("d1", 0, 1.0), ("d1", 8, 1.0), ("d2", 30, 1.0)), batch(("d1", 4, 1.0))],
    )
    assert rows(run.results()["w"], "count") == [("d1", 0, 13, 3), ("d2", 30, 35, 1)]


def test_late_reading_within_lateness_extends_a_closed_session_backwards() -> None:
    feed = [batch(("d1", 10, 1.0), ("d2", 20, 1.0)), batch(("d1", 7, 2.0))]
    aggregates = (Aggregate("count"), Aggregate("first", "value"))
    run = run_task(plan(FIVE_SECONDS, aggregates, allowed_lateness=10), feed)
    assert rows(run.results()["w"], "count", "value_first") == [
        ("d1", 7, 15, 2, 2.0),
        ("d2", 20, 25, 1, 1.0),
    ]


def test_reading_after_the_lateness_is_late_and_counted() -> None:
    task = PartitionTask(plan(FIVE_SECONDS, allowed_lateness=2))
    task.process(batch(("d1", 0, 1.0), ("d1", 20, 1.0)), now_us=0)
    # The watermark is 20 s: a reading is late once ts + gap + lateness <= 20 s.
    output = task.process(batch(("d1", 13.5, 1.0), ("d1", 13, 1.0)), now_us=0)
    assert output.late_count == 1
    assert output.late is not None
    assert output.late["ts"].dt.epoch("s").to_list() == [13]


def test_reading_after_its_session_was_evicted_starts_a_fresh_session() -> None:
    # The reading at 15 s closes [0, 10) for good; 8 s is not late, but may not reopen it.
    engine_plan = plan(SessionWindow(s(10)))
    one_batch = run_task(
        engine_plan, [batch(("d1", 0, 1.0)), batch(("d1", 15, 1.0), ("d1", 8, 1.0))]
    )
    split = run_task(engine_plan, [batch(("d1", 0, 1.0), ("d1", 15, 1.0)), batch(("d1", 8, 1.0))])
    expected = [("d1", 0, 10, 1), ("d1", 8, 25, 2)]
    assert rows(one_batch.results()["w"], "count") == expected
    assert rows(split.results()["w"], "count") == expected


def test_state_is_evicted_after_lateness() -> None:
    task = PartitionTask(plan(FIVE_SECONDS, allowed_lateness=5))
    task.process(batch(("d1", 0, 1.0), ("d2", 8, 1.0)), now_us=0)
    [operator] = task.operators.values()
    assert isinstance(operator, WindowOperator)
    assert operator.state is not None
    assert operator.state.height == 2
    task.process(batch(("d2", 10, 1.0)), now_us=0)
    assert operator.state["device_id"].to_list() == ["d2"]


def test_aggregates_and_percentiles_follow_merges() -> None:
    aggregates = (
        Aggregate("count"),
        Aggregate("first", "value"),
        Aggregate("last", "value"),
        Aggregate("mean", "value"),
        Aggregate("p50", "value"),
    )
    feed = [batch(("d1", 0, 10.0), ("d1", 8, 30.0)), batch(("d1", 4, 20.0))]
    run = run_task(plan(FIVE_SECONDS, aggregates, out_of_orderness=10), feed)
    [result] = run.results()["w"].to_dicts()
    assert result["count"] == 3
    assert (result["value_first"], result["value_last"]) == (10.0, 30.0)
    assert result["value_mean"] == pytest.approx(20.0)
    assert result["value_p50"] == pytest.approx(20.0, rel=0.0101)


def test_gap_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="gap must be positive"):
        SessionWindow(s(0))
