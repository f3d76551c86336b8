"""Windows over window results: roll-ups equal the direct computation, corrections included."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.plan import EnginePlan, EventTime
from sensorstream.engine.windows import HoppingWindow, TumblingWindow, WindowStep
from sensorstream.testing import (
    ReadingValue,
    batch_sizes,
    reading_streams,
    readings_frame,
    run_task,
    split,
)
from tests.unit.engine.helpers import batch, rows, s

MINUTE = WindowStep(
    "minute",
    TumblingWindow(s(60)),
    ("device_id",),
    (
        Aggregate("count"),
        Aggregate("sum", "value"),
        Aggregate("min", "value"),
        Aggregate("max", "value"),
    ),
)
ROLLUP = (
    Aggregate("sum", "count", alias="count"),
    Aggregate("sum", "value_sum", alias="total"),
    Aggregate("min", "value_min", alias="low"),
    Aggregate("max", "value_max", alias="high"),
    Aggregate("count", alias="minutes"),
)
HOUR = WindowStep("hour", TumblingWindow(s(600)), ("device_id",), ROLLUP, input="minute")
DIRECT = WindowStep(
    "direct",
    TumblingWindow(s(600)),
    ("device_id",),
    (
        Aggregate("count"),
        Aggregate("sum", "value", alias="total"),
        Aggregate("min", "value", alias="low"),
        Aggregate("max", "value", alias="high"),
    ),
)


def plan(lateness: float, *steps: WindowStep) -> EnginePlan:
    return EnginePlan(
        ("value",),
        steps,
        EventTime(out_of_orderness=s(5), allowed_lateness=s(lateness), idle_timeout=None),
    )


def final(run_results: dict[str, pl.DataFrame], step: str) -> list[tuple[object, ...]]:
    frame = run_results[step]
    return rows(frame, "count", "total", "low", "high") if frame.width else []


def test_minutes_roll_up_into_the_ten_minute_window_they_belong_to() -> None:
    feed = [
        batch(("d1", 10, 1.0), ("d1", 70, 5.0), ("d1", 599, 2.0)),
        batch(("d1", 650, 4.0), ("d2", 30, 3.0)),
    ]
    results = run_task(plan(0, MINUTE, HOUR, DIRECT), feed).results()
    assert final(results, "hour") == final(results, "direct")
    assert rows(results["hour"], "minutes")[0] == ("d1", 0, 600, 3)  # minutes 0, 1 and 9


def test_a_corrected_minute_replaces_what_it_contributed_to_its_hour() -> None:
    # The minute [0, 60) closes at watermark 60 with max 5; a late reading of 9 within the
    # allowed lateness corrects it, and the hour's max follows, as if it had come in time.
    feed = [
        batch(("d1", 10, 5.0), ("d1", 70, 1.0)),
        batch(("d1", 20, 9.0)),  # late for the minute, within its 30 s of lateness
        batch(("d1", 700, 1.0)),
    ]
    run = run_task(plan(30, MINUTE, HOUR, DIRECT), feed)
    results = run.results()
    assert final(results, "hour") == final(results, "direct")
    assert final(results, "hour")[0] == ("d1", 0, 600, 3, 15.0, 1.0, 9.0)


def test_a_hopping_roll_up_counts_each_minute_in_every_window_it_falls_in() -> None:
    hopping = WindowStep(
        "hop", HoppingWindow(s(300), s(120)), ("device_id",), (Aggregate("count"),), input="minute"
    )
    results = run_task(
        plan(0, MINUTE, hopping), [batch(("d1", 10, 1.0), ("d1", 130, 1.0))]
    ).results()
    assert rows(results["hop"], "count") == [
        ("d1", -240, 60, 1),
        ("d1", -120, 180, 2),
        ("d1", 0, 300, 2),
        ("d1", 120, 420, 1),
    ]


SHORT_MINUTE = WindowStep(
    "minute",
    TumblingWindow(s(4)),
    ("device_id",),
    (
        Aggregate("count"),
        Aggregate("sum", "value"),
        Aggregate("min", "value"),
        Aggregate("max", "value"),
    ),
)
SHORT_HOUR = WindowStep("hour", TumblingWindow(s(12)), ("device_id",), ROLLUP, input="minute")
MICROS = 1_000_000


def hours_of(minutes: pl.DataFrame) -> list[tuple[object, ...]]:
    """The reference: final minute results, grouped by the 12 s window each belongs to."""
    if minutes.width == 0:
        return []
    start = (pl.col("window_end").cast(pl.Int64) - 1) // (12 * MICROS) * (12 * MICROS)
    grouped = (
        minutes.with_columns(start.alias("hour"))
        .group_by("device_id", "hour")
        .agg(
            pl.col("count").sum(),
            pl.col("value_sum").sum(),
            pl.col("value_min").min(),
            pl.col("value_max").max(),
        )
        .sort("device_id", "hour")
    )
    return [
        (device, hour / MICROS, hour / MICROS + 12, count, total, low, high)
        for device, hour, count, total, low, high in grouped.iter_rows()
    ]


@settings(max_examples=150)
@given(
    # Many readings late within the lateness, so that minutes are corrected often.
    reading_streams(measurements=("value",), max_readings=40, late_percent=40),
    st.sampled_from([0.0, 2.0, 10.0]),
    st.data(),
)
def test_a_roll_up_equals_its_minutes_grouped_afterwards_on_any_stream(
    stream: list[dict[str, ReadingValue]], lateness: float, data: st.DataObject
) -> None:
    chosen = plan(lateness, SHORT_MINUTE, SHORT_HOUR)
    batches = split(stream, data.draw(batch_sizes(len(stream), max_batches=4)))
    feed = [readings_frame(rows_, measurements=("value",)) for rows_ in batches]
    restart = data.draw(st.none() | st.integers(0, len(feed)))
    results = run_task(chosen, feed, restart_after=restart).results()
    hour = results["hour"]
    actual = rows(hour, "count", "total", "low", "high") if hour.width else []
    assert actual == hours_of(results["minute"])
