"""The per-key range rule reading each key's range from a table."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sensorstream.engine.plan import Dedup, EnginePlan, EventTime
from sensorstream.engine.rules import Range, RuleStep
from sensorstream.engine.steps import StepError
from sensorstream.engine.tables import TableDecl
from sensorstream.engine.task import PartitionTask

SECOND = timedelta(seconds=1)
RANGES = TableDecl(
    "ranges",
    ("user",),
    {"low": pl.Float64(), "high": pl.Float64()},
    {"user": pl.String()},
)
COLUMNS = {"device_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "heart_rate": pl.Float64()}


def plan(condition: Range) -> EnginePlan:
    return EnginePlan(
        ("heart_rate",),
        (RuleStep("out_of_range", "readings", condition),),
        EventTime(out_of_orderness=SECOND, idle_timeout=None),
        Dedup(enabled=False),
        columns=COLUMNS,
        tables=(RANGES,),
    )


def beats(*rows: tuple[str, float, float]) -> pl.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        [(user, start + timedelta(seconds=s), bpm) for user, s, bpm in rows],
        schema=COLUMNS,
        orient="row",
    )


def transitions(task: PartitionTask, frame: pl.DataFrame) -> list[tuple[str, str]]:
    events = task.process(frame, now_us=0).events.get("out_of_range")
    return [] if events is None else events.select("key", "state").rows()


def test_a_range_from_a_table_judges_each_key_by_its_own_row() -> None:
    task = PartitionTask(plan(Range("heart_rate", table="ranges")))
    task.apply_table(
        "ranges",
        pl.DataFrame({"user": ["ann", "bob"], "low": [50.0, 70.0], "high": [90.0, 110.0]}),
        full=True,
        at_us=0,
    )
    task.process(beats(("ann", 0, 100), ("bob", 0, 100), ("cy", 0, 300)), now_us=0)
    fired = task.finish().events["out_of_range"]
    assert fired.filter(pl.col("state") == "firing")["key"].to_list() == ['{"device_id": "ann"}']


def test_a_changed_range_applies_to_later_readings() -> None:
    task = PartitionTask(plan(Range("heart_rate", table="ranges", low="low", high="high")))
    rows = {"user": ["ann"], "low": [50.0], "high": [90.0]}
    task.apply_table("ranges", pl.DataFrame(rows), full=True, at_us=0)
    out = task.process(beats(("ann", 0, 95), ("ann", 5, 95)), now_us=0)
    assert out.events["out_of_range"]["state"].to_list() == ["firing"]
    task.apply_table("ranges", pl.DataFrame({**rows, "high": [100.0]}), full=True, at_us=0)
    out = task.process(beats(("ann", 10, 95), ("ann", 20, 95)), now_us=0)
    assert out.events["out_of_range"]["state"].to_list() == ["resolved"]


def test_a_range_names_a_table_that_has_its_columns() -> None:
    with pytest.raises(StepError, match="'top'"):
        _ = plan(Range("heart_rate", table="ranges", high="top")).graph
    with pytest.raises(StepError, match="no step is called 'nope'"):
        _ = plan(Range("heart_rate", table="nope")).graph
