"""The stream x stream join against its brute-force model, on random out-of-order streams.

Each example draws a join (interval or windowed, inner or left, a bound, a lateness), two
streams with disorder and late rows, cuts each into random batches and interleaves them in
rounds as a partition task would deliver them (one side's batch, or both sides' in one
round with one watermark), and checkpoints and restores the operator at a random round.
The pairs it emits must be exactly the model's, each once; the late rows the same; every
pair's time the later of its two; and once the watermark has passed everything, nothing
is left in its buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import polars as pl
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sensorstream.engine.joins.streams import JoinHow, StreamJoinOperator, StreamJoinStep
from sensorstream.engine.watermarks import MAX_WATERMARK, MIN_WATERMARK, WatermarkTracker
from sensorstream.engine.windows import HoppingWindow, TumblingWindow
from sensorstream.readings import TS_TYPE
from sensorstream.testing import ReadingValue, batch_sizes, checkpointed, reading_streams, split
from tests.property.joins_reference import Pair, Reference, micros, watermarked

SECOND = timedelta(seconds=1)
WINDOWS = (None, None, TumblingWindow(2 * SECOND), HoppingWindow(3 * SECOND, SECOND))
HOWS: tuple[JoinHow, ...] = ("inner", "left")
Rows = list[dict[str, ReadingValue]]
Round = list[tuple[int, Rows]]  # the batches one round delivers, by input index


@st.composite
def joins(draw: st.DrawFn) -> StreamJoinStep:
    window = draw(st.sampled_from(WINDOWS))
    within = None if window else draw(st.sampled_from([timedelta(0), SECOND / 2, 2.5 * SECOND]))
    how = draw(st.sampled_from(HOWS))
    return StreamJoinStep("j", "a", "b", ("device_id",), within, how, window)


@st.composite
def rounds(draw: st.DrawFn, left: Rows, right: Rows) -> list[Round]:
    """Both sides cut into batches, delivered in order, alone or two to a round."""
    pending = [
        split(left, draw(batch_sizes(len(left), max_batches=4))),
        split(right, draw(batch_sizes(len(right), max_batches=4))),
    ]
    out: list[Round] = []
    while pending[0] or pending[1]:
        choices = [index for index in (0, 1) if pending[index]]
        first = draw(st.sampled_from(choices))
        delivered = [(first, pending[first].pop(0))]
        other = 1 - first
        together = draw(st.booleans())
        if together and pending[other]:
            delivered.append((other, pending[other].pop(0)))
        out.append(delivered)
    return out


def identified(rows: Rows, column: str) -> Rows:
    return [{**row, column: number} for number, row in enumerate(rows)]


def plain(rows: Rows, column: str) -> list[tuple[int, str, int]]:
    """(id, key, time) of each row, for the model."""
    out = []
    for row in rows:
        id_, key, ts = row[column], row["device_id"], row["ts"]
        assert isinstance(id_, int)
        assert isinstance(key, str)
        assert isinstance(ts, int)
        out.append((id_, key, ts))
    return out


def frame(rows: Rows, column: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": pl.Series([r["device_id"] for r in rows], dtype=pl.String),
            "ts": pl.Series([r["ts"] for r in rows], dtype=pl.Int64).cast(TS_TYPE),
            "value": pl.Series([r["temperature"] for r in rows], dtype=pl.Float64),
            column: pl.Series([r[column] for r in rows], dtype=pl.Int64),
        }
    )


def run_operator(
    step: StreamJoinStep,
    lateness: timedelta,
    out_of_orderness: timedelta,
    feed: Sequence[Round],
    restart: int,
    *,
    close_rounds: bool,
) -> tuple[pl.DataFrame, list[list[bool]], int]:
    """Drive the operator as a task would; return its rows, late flags per side, what's left.

    With ``close_rounds``, a round that moves the watermark ends with ``on_watermark``.
    """
    trackers = [WatermarkTracker(micros(out_of_orderness)) for _ in (0, 1)]
    columns = ("l_id", "r_id")

    def build() -> StreamJoinOperator:
        return StreamJoinOperator(step, lateness)

    operator = build()
    emitted: list[pl.DataFrame] = []
    late: list[list[bool]] = [[], []]
    before = min(tracker.watermark for tracker in trackers)
    for position, delivered in enumerate(feed):
        if position == restart:
            state = checkpointed(operator.snapshot())
            operator = build()
            operator.restore(state)
        annotated = [
            (index, trackers[index].annotate(frame(rows, columns[index]), 0))
            for index, rows in delivered
        ]
        watermark = min(tracker.watermark for tracker in trackers)
        for index, batch in annotated:
            output = operator.process_from(index, batch, watermark)
            assert output.late is not None
            assert output.late.len() == batch.height
            late[index] += output.late.to_list()
            if output.rows is not None:
                emitted.append(output.rows)
        if close_rounds and watermark > before:
            closed = operator.on_watermark(watermark).rows
            if closed is not None:
                emitted.append(closed)
        before = watermark
    last = operator.on_watermark(MAX_WATERMARK).rows
    if last is not None:
        emitted.append(last)
    rows = pl.concat(emitted, how="diagonal_relaxed") if emitted else pl.DataFrame()
    return rows, late, operator.buffered_rows


def pairs_of(rows: pl.DataFrame, step: StreamJoinStep) -> list[Pair]:
    if rows.height == 0:
        return []
    start = (
        pl.col("window_start").cast(pl.Int64) if step.window is not None else pl.lit(None, pl.Int64)
    )
    found = rows.select("l_id", "r_id", start.alias("start")).rows()
    return sorted(((row[0], row[1], row[2]) for row in found), key=repr)


@settings(deadline=None)
@given(
    step=joins(),
    lateness=st.sampled_from([timedelta(0), SECOND, 2 * SECOND]),
    out_of_orderness=st.sampled_from([timedelta(0), SECOND, 2 * SECOND]),
    data=st.data(),
)
def test_the_join_emits_exactly_the_pairs_of_the_brute_force_model(
    step: StreamJoinStep,
    lateness: timedelta,
    out_of_orderness: timedelta,
    data: st.DataObject,
) -> None:
    streams = reading_streams(
        devices=("d1", "d2"), measurements=("temperature",), tags={}, max_readings=16
    )
    left = identified(data.draw(streams), "l_id")
    right = identified(data.draw(streams), "r_id")
    feed = data.draw(rounds(left, right))
    restart = data.draw(st.integers(0, len(feed)))
    close_rounds = data.draw(st.booleans())

    rows, late, left_over = run_operator(
        step, lateness, out_of_orderness, feed, restart, close_rounds=close_rounds
    )

    lag = micros(out_of_orderness)
    model = Reference(step, micros(lateness))
    left_rows = watermarked(plain(left, "l_id"), lag)
    right_rows = watermarked(plain(right, "r_id"), lag)
    assert late[0] == [model.late(row) for row in left_rows]
    assert late[1] == [model.late(row) for row in right_rows]
    expected = model.pairs(left_rows, right_rows)
    assert pairs_of(rows, step) == expected
    event(f"pairs: {sum(r is not None for _, r, _ in expected) > 0}")
    event(f"unpaired left rows: {sum(r is None for _, r, _ in expected) > 0}")
    event(f"late rows: {any(late[0] + late[1])}")
    event(f"two inputs in one round: {any(len(delivered) == 2 for delivered in feed)}")
    assert left_over == 0
    if rows.height:
        times = {row.id: row.ts for row in left_rows}, {row.id: row.ts for row in right_rows}
        seen = tuple(
            {row.id: MIN_WATERMARK if row.watermark is None else row.watermark for row in side}
            for side in (left_rows, right_rows)
        )
        for l_id, r_id, ts, ts_right, watermark in rows.select(
            "l_id", "r_id", pl.col("ts", "ts_right").cast(pl.Int64), "__watermark"
        ).iter_rows():
            later = times[0][l_id] if r_id is None else max(times[0][l_id], times[1][r_id])
            assert ts == later
            assert ts_right == (None if r_id is None else times[1][r_id])
            if r_id is not None:  # the later-arriving member's, in any batching
                assert watermark == max(seen[0][l_id], seen[1][r_id])
        assert "__row" not in rows.columns
    if close_rounds and step.how == "left" and rows.height:
        # An unpaired row carries the watermark that dropped it at the earliest.
        unpaired = rows.filter(pl.col("r_id").is_null())
        if step.window is None:
            bound = pl.col("ts").cast(pl.Int64) + micros(step.within or timedelta(0))
        else:
            bound = pl.col("window_end").cast(pl.Int64) - 1
        expected_watermark = bound + micros(lateness) + 1
        assert unpaired.select(pl.col("__watermark") == expected_watermark).to_series().all()
