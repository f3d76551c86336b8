"""The columnar engine against the per-event reference model, on random out-of-order streams.

Each example draws a plan (window steps, keys, event-time policy, deduplication) and a
stream with disorder, far-late readings, exact duplicates and null measurements, splits it
into random batches with processing-clock ticks between them, and checks that
``PartitionTask`` ends with the same results, duplicates, late readings and watermarks as
``tests/property/reference.py``. The contract properties (batch splits, restore, no
mutation) compare the engine with itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.engine.aggregates import SIMPLE_FUNCTIONS, Aggregate
from sensorstream.engine.task import Dedup, EnginePlan, EventTime
from sensorstream.engine.watermarks import MIN_WATERMARK
from sensorstream.engine.windows import (
    HoppingWindow,
    SessionWindow,
    TumblingWindow,
    Window,
    WindowStep,
)
from sensorstream.testing import (
    ReadingRow,
    ReadingValue,
    TaskRun,
    Tick,
    batch_sizes,
    reading_streams,
    readings_frame,
    run_task,
    split,
)
from tests.property.reference import Reading, ReferenceTask, Result, Scalar, WindowId

MEASUREMENTS = ("temperature", "humidity")
TAGS = ("site",)
SECOND = timedelta(seconds=1)

# Every aggregate function on both measurements, and the plain reading count. Each step
# computes all the simple ones (they share one group-by, so they cost little) and up to two
# percentiles (each costs its own passes over the sketch, the bulk of an example's time).
SIMPLE_AGGREGATES = (
    Aggregate("count"),
    *(
        Aggregate(function, measurement)
        for measurement in MEASUREMENTS
        for function in SIMPLE_FUNCTIONS
    ),
)
PERCENTILES = tuple(
    Aggregate(function, measurement)
    for measurement in MEASUREMENTS
    for function in ("p0", "p50", "p90", "p99", "p99.9")
)
KEYS: tuple[tuple[str, ...], ...] = (("device_id",), (), ("site",), ("device_id", "site"))
WINDOWS: tuple[Window, ...] = (
    TumblingWindow(SECOND),
    TumblingWindow(2 * SECOND),
    TumblingWindow(5 * SECOND),
    TumblingWindow(5 * SECOND, offset=SECOND / 2),
    HoppingWindow(2 * SECOND, SECOND),
    HoppingWindow(6 * SECOND, 2 * SECOND),
    HoppingWindow(5 * SECOND, 2 * SECOND),
    HoppingWindow(1.5 * SECOND, 0.5 * SECOND),
    SessionWindow(SECOND),
    SessionWindow(1.5 * SECOND),
    SessionWindow(2 * SECOND),
    SessionWindow(2.5 * SECOND),
    SessionWindow(3 * SECOND),
    SessionWindow(5 * SECOND),
)
DURATIONS = (timedelta(0), SECOND / 4, SECOND, 2.5 * SECOND, 4 * SECOND)


@st.composite
def plans(draw: st.DrawFn, *, idle: bool = True) -> EnginePlan:
    """Plans with up to two window steps and a random event-time and dedup policy."""
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 2]))
    percentiles = st.lists(st.sampled_from(PERCENTILES), max_size=2, unique_by=lambda a: a.name)
    steps = tuple(
        WindowStep(
            f"step{i}",
            draw(st.sampled_from(WINDOWS)),
            draw(st.sampled_from(KEYS)),
            (*SIMPLE_AGGREGATES, *draw(percentiles)),
        )
        for i in range(count)
    )
    idle_timeouts: list[timedelta | None] = [None, 2 * SECOND, 5 * SECOND] if idle else [None]
    event_time = EventTime(
        out_of_orderness=draw(st.sampled_from(DURATIONS)),
        allowed_lateness=draw(st.sampled_from(DURATIONS)),
        idle_timeout=draw(st.sampled_from(idle_timeouts)),
    )
    dedup = draw(
        st.sampled_from(
            [
                Dedup(),
                Dedup(),
                Dedup(enabled=False),
                Dedup(horizon=timedelta(0)),
                Dedup(horizon=SECOND),
            ]
        )
    )
    return EnginePlan(MEASUREMENTS, steps, event_time, dedup)


Batch = list[dict[str, ReadingValue]]
FeedItem = Batch | Tick


@st.composite
def session_plans(draw: st.DrawFn) -> EnginePlan:
    """One session step with allowed lateness: late readings reopen and merge sessions."""
    step = WindowStep(
        "sessions",
        draw(st.sampled_from([SessionWindow(SECOND), SessionWindow(2 * SECOND)])),
        draw(st.sampled_from([("device_id",), ()])),
        (Aggregate("count"), Aggregate("first", "temperature"), Aggregate("p50", "temperature")),
    )
    event_time = EventTime(
        out_of_orderness=draw(st.sampled_from([timedelta(0), SECOND / 4, SECOND])),
        allowed_lateness=draw(st.sampled_from([SECOND, 2.5 * SECOND, 4 * SECOND])),
        idle_timeout=None,
    )
    return EnginePlan(MEASUREMENTS, (step,), event_time)


@st.composite
def feeds(
    draw: st.DrawFn,
    *,
    ticks: bool = True,
    max_readings: int = 24,
    late_percent: int = 10,
) -> list[FeedItem]:
    """A random stream cut into random batches, with processing-clock ticks between them."""
    rows = draw(
        reading_streams(
            measurements=MEASUREMENTS, max_readings=max_readings, late_percent=late_percent
        )
    )
    batches = split(rows, draw(batch_sizes(len(rows), max_batches=4)))
    feed: list[FeedItem] = []
    now_us = 0
    for batch in batches:
        if ticks and draw(st.booleans()):
            now_us += draw(st.integers(0, 8)) * 1_000_000
            feed.append(Tick(now_us))
        feed.append(batch)
    if ticks and draw(st.booleans()):
        feed.append(Tick(now_us + draw(st.integers(0, 60)) * 1_000_000))
    return feed


def frames(feed: Sequence[FeedItem]) -> list[pl.DataFrame | Tick]:
    """The feed with each batch as a canonical readings frame."""
    return [
        item
        if isinstance(item, Tick)
        else readings_frame(item, measurements=MEASUREMENTS, tags=TAGS)
        for item in feed
    ]


def reference_readings(rows: Sequence[ReadingRow]) -> list[Reading]:
    return [Reading.from_row(row, MEASUREMENTS, TAGS) for row in rows]


@dataclass
class ReferenceRun:
    task: ReferenceTask
    watermarks: list[int | None]  # None while no reading was seen


def run_reference(plan: EnginePlan, feed: Sequence[FeedItem]) -> ReferenceRun:
    task = ReferenceTask(plan)
    now_us = 0
    watermarks: list[int | None] = []
    for item in feed:
        if isinstance(item, Tick):
            now_us = item.now_us
            task.tick(now_us)
        else:
            task.process(reference_readings(item), now_us)
        watermarks.append(task.watermark if task.max_event is not None else None)
    task.finish()
    return ReferenceRun(task, watermarks)


# -- comparing results --------------------------------------------------------------------


def as_windows(frame: pl.DataFrame, key: Sequence[str]) -> dict[WindowId, Result]:
    """Final results of one step by (key values, window start in microseconds)."""
    if frame.width == 0:
        return {}
    rows = frame.with_columns(pl.col("window_start", "window_end").cast(pl.Int64)).to_dicts()
    windows: dict[WindowId, Result] = {}
    for row in rows:
        identity = (tuple(row[column] for column in key), int(row["window_start"]))
        assert identity not in windows, f"two final results for window {identity}"
        windows[identity] = {
            name: value for name, value in row.items() if name not in (*key, "window_start")
        }
    return windows


def close_enough(actual: Scalar, expected: Scalar, *, relative: float, absolute: float) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, float) or isinstance(actual, float):
        assert isinstance(actual, int | float), actual
        assert isinstance(expected, int | float), expected
        return abs(actual - expected) <= relative * abs(expected) + absolute
    return actual == expected


def assert_same_windows(
    actual: Mapping[WindowId, Result],
    expected: Mapping[WindowId, Result],
    step: WindowStep,
    *,
    percentile_accuracy: float,
) -> None:
    missing = sorted(set(expected) - set(actual), key=repr)
    extra = sorted(set(actual) - set(expected), key=repr)
    assert not missing, f"{step.name}: windows missing from the engine: {missing}"
    assert not extra, f"{step.name}: windows the reference does not have: {extra}"
    percentiles = {agg.name for agg in step.aggregates if agg.quantile is not None}
    for identity, want in expected.items():
        got = actual[identity]
        for column, value in want.items():
            nan = isinstance(got[column], float) and math.isnan(got[column])  # type: ignore[arg-type]
            assert not nan, f"{step.name} window {identity}: {column} is NaN"
            if column in percentiles:
                tolerance = {"relative": percentile_accuracy, "absolute": 1e-9}
            else:
                tolerance = {"relative": 1e-9, "absolute": 1e-9}
            assert close_enough(got[column], value, **tolerance), (
                f"{step.name} window {identity}: {column} is {got[column]!r}, expected {value!r}"
            )


def late_rows(run: TaskRun) -> list[tuple[str, int, str]]:
    late = run.late
    if late is None:
        return []
    return [
        (row["device_id"], row["ts"], row["late_for"])
        for row in late.with_columns(pl.col("ts").cast(pl.Int64)).to_dicts()
    ]


def accepted_rows(frame: pl.DataFrame | None) -> list[tuple[object, ...]]:
    if frame is None:
        return []
    return [
        (row["device_id"], row["ts"], *(row[m] for m in MEASUREMENTS))
        for row in frame.with_columns(pl.col("ts").cast(pl.Int64)).to_dicts()
    ]


def assert_same_runs(actual: TaskRun, expected: TaskRun) -> None:
    assert actual.duplicates == expected.duplicates
    assert actual.late_count == expected.late_count
    assert late_rows(actual) == late_rows(expected)
    assert accepted_rows(actual.accepted) == accepted_rows(expected.accepted)
    got, want = actual.results(), expected.results()
    for step in actual.plan.windows:
        assert_same_windows(
            as_windows(got[step.name], step.key),
            as_windows(want[step.name], step.key),
            step,
            percentile_accuracy=1e-9,
        )


def readings_of(feed: Sequence[FeedItem]) -> list[dict[str, ReadingValue]]:
    return [row for item in feed if not isinstance(item, Tick) for row in item]


# -- the properties ----------------------------------------------------------------------


def assert_matches_reference(plan: EnginePlan, feed: Sequence[FeedItem]) -> None:
    run = run_task(plan, frames(feed))
    reference = run_reference(plan, feed)
    model = reference.task

    assert run.duplicates == model.duplicates
    assert run.late_count == model.late_count
    assert late_rows(run) == [
        (late.reading.device_id, late.reading.ts, late.late_for) for late in model.late
    ]
    assert accepted_rows(run.accepted) == [
        (r.device_id, r.ts, *(r.measurement(m) for m in MEASUREMENTS)) for r in model.accepted
    ]
    engine_watermarks = [
        None if watermark == MIN_WATERMARK else watermark for watermark in run.watermarks[:-1]
    ]
    assert engine_watermarks == reference.watermarks
    results = run.results()
    for step in plan.windows:
        assert_same_windows(
            as_windows(results[step.name], step.key),
            model.results()[step.name],
            step,
            percentile_accuracy=0.0101,
        )


@settings(deadline=None)
@given(plan=plans(), feed=feeds())
def test_engine_matches_the_per_event_reference(plan: EnginePlan, feed: list[FeedItem]) -> None:
    assert_matches_reference(plan, feed)


@settings(deadline=None)
@given(plan=session_plans(), feed=feeds(ticks=False, max_readings=20, late_percent=40))
def test_late_session_merges_match_the_per_event_reference(
    plan: EnginePlan, feed: list[FeedItem]
) -> None:
    assert_matches_reference(plan, feed)


@settings(deadline=None)
@given(plan=plans(idle=False), feed=feeds(ticks=False, max_readings=12), data=st.data())
def test_batch_split_does_not_change_results(
    plan: EnginePlan, feed: list[FeedItem], data: st.DataObject
) -> None:
    rows = readings_of(feed)
    other = split(rows, data.draw(batch_sizes(len(rows), max_batches=4), label="other sizes"))
    assert_same_runs(run_task(plan, frames(other)), run_task(plan, frames(feed)))


@settings(deadline=None)
@given(plan=plans(idle=False), feed=feeds(ticks=False, max_readings=12), data=st.data())
def test_restore_mid_stream_gives_same_results(
    plan: EnginePlan, feed: list[FeedItem], data: st.DataObject
) -> None:
    restart_after = data.draw(st.integers(0, len(feed)), label="restart after")
    batches = frames(feed)
    restored = run_task(plan, batches, restart_after=restart_after)
    assert_same_runs(restored, run_task(plan, batches))


@settings(deadline=None)
@given(plan=plans(), feed=feeds(max_readings=12))
def test_the_input_is_not_mutated(plan: EnginePlan, feed: list[FeedItem]) -> None:
    batches = frames(feed)
    copies = [item if isinstance(item, Tick) else item.clone() for item in batches]
    run_task(plan, batches)
    for before, after in zip(copies, batches, strict=True):
        if isinstance(before, pl.DataFrame):
            assert isinstance(after, pl.DataFrame)
            assert after.equals(before)
            assert after.schema == before.schema
