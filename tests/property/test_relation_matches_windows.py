"""The relation against the windows it compares, on random out-of-order streams.

Each example runs real window operators over a random stream with disorder and late
readings (within the allowed lateness, some correct a window that already came out), in
random batches, feeding their results to a relation round by round as a partition task
would: each side's results in a call of its own, then ``on_watermark`` if the watermark
moved. The relation is checkpointed and restored at a random round. Its final rows must be
exactly the comparison of the two windows' final results: every window either side has,
with the other side null where it has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import polars as pl
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.operator import Operator
from sensorstream.engine.outputs import END, WATERMARK, OutputKind, Shape
from sensorstream.engine.relation import RelationStep
from sensorstream.engine.time import EventTime, micros
from sensorstream.engine.watermarks import WatermarkTracker
from sensorstream.engine.windows import HoppingWindow, TumblingWindow, Window, WindowStep
from sensorstream.readings import TS, TS_TYPE
from sensorstream.testing import (
    ReadingValue,
    apply_changes,
    batch_sizes,
    checkpointed,
    reading_streams,
    readings_frame,
    split,
)

SECOND = timedelta(seconds=1)
MEASUREMENTS = ("temperature", "humidity")
WINDOWS: tuple[Window, ...] = (TumblingWindow(4 * SECOND), HoppingWindow(6 * SECOND, 2 * SECOND))
BANDS = DeriveStep("bands", "readings", columns=(("band", "temperature > 0"),))
Key = tuple[object, ...]


@dataclass(frozen=True)
class Case:
    """Two window steps over (filtered) readings, and the relation comparing them."""

    left: WindowStep
    right: WindowStep  # the same step as left when the relation splits one by filters
    left_rows: str | None  # a filter of the readings each window reads
    right_rows: str | None
    relation: RelationStep


@st.composite
def cases(draw: st.DrawFn) -> Case:
    window = draw(st.sampled_from(WINDOWS))
    if draw(st.booleans()):  # two steps: all readings, and the warm ones
        mean = (Aggregate("mean", "temperature"),)
        every = WindowStep("every", window, ("device_id",), mean)
        warm = WindowStep("warm", window, ("device_id",), mean)
        relation = RelationStep("r", "every", "warm", "temperature_mean", ("device_id",))
        return Case(every, warm, None, "temperature > 0", relation)
    banded = WindowStep("banded", window, ("device_id", "band"), (Aggregate("max", "humidity"),))
    relation = RelationStep(
        "r", "banded", "banded", "humidity_max", ("device_id",), "band", "NOT band"
    )
    return Case(banded, banded, None, None, relation)


def observations(results: pl.DataFrame, before: int) -> pl.DataFrame:
    """Window results as a step reading them gets them (see the task's ``_input_rows``)."""
    ts = (pl.col(END).cast(pl.Int64) - 1).cast(TS_TYPE)
    return results.with_columns(ts.alias(TS), pl.lit(before, pl.Int64).alias(WATERMARK))


def run(
    case: Case, event_time: EventTime, batches: Sequence[pl.DataFrame], restart: int
) -> tuple[list[pl.DataFrame], list[pl.DataFrame], list[pl.DataFrame]]:
    """The two windows' result batches and the relation's, round by round."""
    tracker = WatermarkTracker(micros(event_time.out_of_orderness))
    stream = Shape(OutputKind.STREAM)
    one_step = case.right is case.left
    windows: list[Operator] = [case.left.build(stream, event_time)]
    if not one_step:
        windows.append(case.right.build(stream, event_time))
    shapes = tuple(Shape(OutputKind.RESULTS, None, step.key) for step in (case.left, case.right))
    relation = case.relation.build_of(shapes, event_time)
    changes: tuple[list[pl.DataFrame], list[pl.DataFrame], list[pl.DataFrame]] = ([], [], [])
    filters = (case.left_rows, case.right_rows)

    def window_round(
        index: int, readings: pl.DataFrame | None, moved: bool, watermark: int
    ) -> pl.DataFrame | None:
        window = windows[index]
        if readings is not None:
            condition = filters[index]
            rows = readings if condition is None else readings.filter(pl.sql_expr(condition))
            if rows.height:
                return window.process(rows, watermark).rows
        return window.on_watermark(watermark).rows if moved else None

    def round_of(readings: pl.DataFrame | None, before: int, watermark: int) -> None:
        moved = watermark > before
        outs = [window_round(i, readings, moved, watermark) for i in range(len(windows))]
        sides = outs * 2 if one_step else outs
        for index, out in enumerate(sides):
            if out is None or out.height == 0:
                continue
            if index < len(outs):
                changes[index].append(out)
            emitted = relation.process_from(index, observations(out, before), watermark).rows
            if emitted is not None:
                changes[2].append(emitted)
        if moved:
            emitted = relation.on_watermark(watermark).rows
            if emitted is not None:
                changes[2].append(emitted)

    for position, batch in enumerate(batches):
        if position == restart:
            state = checkpointed(relation.snapshot())
            relation = case.relation.build_of(shapes, event_time)
            relation.restore(state)
        before = tracker.watermark
        annotated = tracker.annotate(batch, 0)
        if "band" in case.left.key:
            annotated = annotated.with_columns(BANDS.expressions())
        round_of(annotated, before, tracker.watermark)
    before = tracker.watermark
    tracker.close()
    round_of(None, before, tracker.watermark)
    return changes


def comparison(left: pl.DataFrame, right: pl.DataFrame, case: Case) -> list[tuple[object, ...]]:
    """What the relation should end with, from the windows' final results."""
    value, key = case.relation.value, list(case.relation.key)

    def side(frame: pl.DataFrame, condition: str | None) -> dict[Key, tuple[object, float]]:
        if frame.width == 0:
            return {}
        if condition is not None:
            frame = frame.filter(pl.sql_expr(condition).fill_null(False))
        rows = frame.select(*key, pl.col("window_start", "window_end").cast(pl.Int64), value)
        return {tuple(row[:-2]): (row[-2], row[-1]) for row in rows.iter_rows()}

    lefts = side(left, case.relation.left_where)
    rights = side(right, case.relation.right_where)
    out: list[tuple[object, ...]] = []
    for identity in set(lefts) | set(rights):
        end, a = lefts.get(identity, (None, None))
        other_end, b = rights.get(identity, (None, None))
        difference = None if a is None or b is None else a - b
        ratio = None if a is None or b is None or b == 0 else a / b
        out.append((*identity, end or other_end, a, b, difference, ratio))
    return out


def close(actual: object, expected: object) -> bool:
    if isinstance(actual, float) and isinstance(expected, float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    return actual == expected


@settings(deadline=None)
@given(
    case=cases(),
    rows=reading_streams(
        devices=("d1", "d2"),
        measurements=MEASUREMENTS,
        tags={},
        max_readings=30,
        late_percent=30,
        max_late_us=6_000_000,
    ),
    out_of_orderness=st.sampled_from([timedelta(0), SECOND]),
    lateness=st.sampled_from([timedelta(0), 4 * SECOND, 4 * SECOND]),
    data=st.data(),
)
def test_the_relation_ends_with_the_comparison_of_the_final_windows(
    case: Case,
    rows: list[dict[str, ReadingValue]],
    out_of_orderness: timedelta,
    lateness: timedelta,
    data: st.DataObject,
) -> None:
    event_time = EventTime(out_of_orderness, lateness, idle_timeout=None)
    batches = [
        readings_frame(piece, measurements=MEASUREMENTS)
        for piece in split(rows, data.draw(batch_sizes(len(rows), max_batches=5)))
    ]
    restart = data.draw(st.integers(0, len(batches)))
    left, right, relation = run(case, event_time, batches, restart)
    key = list(case.relation.key)
    got = apply_changes(relation, key)
    final_left = apply_changes(left, list(case.left.key))
    final_right = apply_changes(left if case.right is case.left else right, list(case.right.key))
    expected = comparison(final_left, final_right, case)
    actual = (
        []
        if got.width == 0
        else got.select(
            *key,
            pl.col("window_start", "window_end").cast(pl.Int64),
            "left",
            "right",
            "difference",
            "ratio",
        ).rows()
    )

    def identity(row: tuple[object, ...]) -> str:
        return repr(row[: len(key) + 1])

    assert [identity(row) for row in sorted(actual, key=identity)] == [
        identity(row) for row in sorted(expected, key=identity)
    ]
    pairs = zip(sorted(actual, key=identity), sorted(expected, key=identity), strict=True)
    for got_row, want_row in pairs:
        assert all(close(a, b) for a, b in zip(got_row, want_row, strict=True)), (got_row, want_row)
    event(f"relation corrections: {any(frame['revision'].gt(0).any() for frame in relation)}")
    event(f"one-sided windows: {any(row[-3] is None or row[-4] is None for row in expected)}")
