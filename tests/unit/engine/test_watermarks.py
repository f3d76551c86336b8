from __future__ import annotations

import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.engine.operator import WATERMARK
from sensorstream.engine.watermarks import MAX_WATERMARK, MIN_WATERMARK, WatermarkTracker
from sensorstream.testing import batch_sizes, reading_streams, readings_frame, split
from tests.unit.engine.helpers import batch, us


def watermarks_before(tracker: WatermarkTracker, frame: pl.DataFrame, now_us: int = 0) -> list[int]:
    return tracker.annotate(frame, now_us)[WATERMARK].to_list()


def test_first_reading_sees_no_watermark() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=us(2))
    assert watermarks_before(tracker, batch(("d1", 10, 1.0))) == [MIN_WATERMARK]
    assert tracker.watermark == us(8)


def test_each_reading_is_judged_against_the_watermark_just_before_it() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=us(2))
    frame = batch(("d1", 10, 1.0), ("d1", 5, 1.0), ("d2", 20, 1.0), ("d1", 12, 1.0))
    assert watermarks_before(tracker, frame) == [MIN_WATERMARK, us(8), us(8), us(18)]
    assert tracker.watermark == us(18)


def test_watermark_is_the_largest_event_time_minus_the_out_of_orderness() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=us(5))
    tracker.annotate(batch(("d1", 30, 1.0), ("d2", 100, 1.0), ("d1", 40, 1.0)), now_us=0)
    assert tracker.watermark == us(95)


def test_watermark_never_moves_backwards() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0)
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=0)
    before = watermarks_before(tracker, batch(("d1", 50, 1.0), ("d1", 60, 1.0)))
    assert before == [us(100), us(100)]
    assert tracker.watermark == us(100)


@settings(deadline=None)
@given(rows=reading_streams(), data=st.data())
def test_watermarks_never_move_backwards_and_ignore_batch_splits(
    rows: list[dict[str, str | int | float | None]], data: st.DataObject
) -> None:
    def run(sizes: list[int]) -> tuple[list[int], list[int]]:
        tracker = WatermarkTracker(out_of_orderness_us=us(2))
        before: list[int] = []
        after: list[int] = []
        for piece in split(rows, sizes):
            before += watermarks_before(tracker, readings_frame(piece, measurements=()))
            after.append(tracker.watermark)
        return before, after

    before, after = run(data.draw(batch_sizes(len(rows))))
    assert before == sorted(before)
    assert after == sorted(after)
    assert not before or after[-1] >= before[-1]
    assert run([len(rows)])[0] == before


def test_empty_batch_changes_nothing_and_is_not_an_arrival() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0, idle_timeout_us=us(10))
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=us(1))
    tracker.annotate(batch(), now_us=us(9))
    assert tracker.watermark == us(100)
    assert tracker.tick(us(11))  # silent since the last real arrival at 1 s
    assert tracker.watermark == us(110)


def test_idle_partition_follows_processing_time_after_the_idle_timeout() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=us(5), idle_timeout_us=us(30))
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=us(1000))
    assert not tracker.tick(us(1029))
    assert tracker.watermark == us(95)
    assert tracker.tick(us(1030))
    assert tracker.watermark == us(95 + 30)
    assert tracker.tick(us(1040))
    assert tracker.watermark == us(95 + 40)


def test_new_readings_after_idleness_do_not_pull_the_watermark_back() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0, idle_timeout_us=us(10))
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=0)
    tracker.tick(us(50))
    assert watermarks_before(tracker, batch(("d1", 101, 1.0)), now_us=us(50)) == [us(150)]
    assert tracker.watermark == us(150)


def test_without_idle_timeout_processing_time_never_moves_the_watermark() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0, idle_timeout_us=None)
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=0)
    assert not tracker.tick(us(10_000))
    assert tracker.watermark == us(100)


def test_partition_that_never_had_a_reading_does_not_advance() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0, idle_timeout_us=us(1))
    assert not tracker.tick(us(10_000))
    assert tracker.watermark == MIN_WATERMARK


def test_end_of_input_moves_the_watermark_past_every_window() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0)
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=0)
    tracker.close()
    assert tracker.watermark == MAX_WATERMARK


def test_restore_continues_from_the_snapshot() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=us(1), idle_timeout_us=us(10))
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=0)
    restored = WatermarkTracker(out_of_orderness_us=us(1), idle_timeout_us=us(10))
    restored.restore(json.loads(json.dumps(tracker.snapshot())))
    assert restored.watermark == us(99)
    assert restored.max_event == us(100)
    assert watermarks_before(restored, batch(("d1", 50, 1.0))) == [us(99)]


def test_restore_keeps_a_watermark_at_the_epoch() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0)
    tracker.annotate(batch(("d1", 0, 1.0)), now_us=0)
    restored = WatermarkTracker(out_of_orderness_us=0)
    restored.restore(tracker.snapshot())
    assert restored.watermark == 0


def test_silence_after_a_restore_counts_from_the_first_tick() -> None:
    tracker = WatermarkTracker(out_of_orderness_us=0, idle_timeout_us=us(10))
    tracker.annotate(batch(("d1", 100, 1.0)), now_us=0)
    restored = WatermarkTracker(out_of_orderness_us=0, idle_timeout_us=us(10))
    restored.restore(tracker.snapshot())
    assert not restored.tick(us(500))  # the crash's downtime is not silence
    assert not restored.tick(us(509))
    assert restored.tick(us(510))
    assert restored.watermark == us(110)
