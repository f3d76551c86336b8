"""Stream x stream joins: pairs once each, late rows, bounded buffers, left rows, windows."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.engine.joins.streams import StreamJoinOperator, StreamJoinStep
from sensorstream.engine.operator import OperatorOutput
from sensorstream.engine.outputs import OutputKind, Shape
from sensorstream.engine.steps import StepError
from sensorstream.engine.watermarks import MAX_WATERMARK
from sensorstream.engine.windows import HoppingWindow, SessionWindow, TumblingWindow
from sensorstream.readings import TS_TYPE
from sensorstream.testing import checkpointed, drive_join, two_streams
from tests.unit.engine.helpers import s, us

Row = tuple[str | None, float, float, float]  # device, ts (s), value, watermark before it (s)


def side(*rows: Row, name: str = "v") -> pl.DataFrame:
    """One input's batch as the task delivers it: readings with their watermarks and row ids."""
    return pl.DataFrame(
        {
            "device_id": pl.Series([r[0] for r in rows], dtype=pl.String),
            "ts": pl.Series([us(r[1]) for r in rows], dtype=pl.Int64).cast(TS_TYPE),
            name: pl.Series([r[2] for r in rows], dtype=pl.Float64),
            "__watermark": pl.Series([us(r[3]) for r in rows], dtype=pl.Int64),
            "__row": pl.Series(range(len(rows)), dtype=pl.UInt32),
        }
    )


def join(
    within: float | None = 2,
    *,
    how: str = "inner",
    window: TumblingWindow | HoppingWindow | None = None,
    lateness: float = 0,
) -> StreamJoinOperator:
    step = StreamJoinStep(
        "j",
        "badges",
        "doors",
        ("device_id",),
        None if within is None else s(within),
        how,  # type: ignore[arg-type]
        window,
    )
    right = {"device_id": pl.String(), "ts": TS_TYPE, "v": pl.Float64(), "__watermark": pl.Int64()}
    return StreamJoinOperator(step, s(lateness), right)


def pairs(output: OperatorOutput, *columns: str) -> list[tuple[object, ...]]:
    if output.rows is None:
        return []
    return list(output.rows.select(columns).iter_rows())


def seconds(frame: pl.DataFrame | None, column: str) -> list[float | None]:
    assert frame is not None
    return [None if v is None else v / 1e6 for v in frame[column].cast(pl.Int64).to_list()]


# -- interval join -----------------------------------------------------------------------------


def test_a_pair_is_emitted_once_when_its_later_member_arrives_from_either_side() -> None:
    operator = join(within=2)
    first = operator.process_from(0, side(("d1", 10, 1.0, 0)), us(0))
    assert first.rows is None
    second = operator.process_from(1, side(("d1", 11, 7.0, 0), name="w"), us(0))
    assert pairs(second, "device_id", "v", "w") == [("d1", 1.0, 7.0)]
    third = operator.process_from(0, side(("d1", 12, 2.0, 0)), us(0))
    assert pairs(third, "v", "w") == [(2.0, 7.0)]  # the new left row x the right buffer


def test_rows_at_most_within_apart_pair_and_further_ones_do_not() -> None:
    operator = join(within=2)
    operator.process_from(0, side(("d1", 10, 1.0, 0), ("d1", 20, 2.0, 0)), us(0))
    found = operator.process_from(1, side(("d1", 12, 7.0, 0), ("d1", 17.5, 8.0, 0)), us(0))
    assert pairs(found, "v", "v_right") == [(1.0, 7.0)]  # 2 s apart: in; 2.5 s: out


def test_a_pair_has_the_left_columns_the_right_ones_suffixed_and_the_later_time() -> None:
    operator = join(within=5)
    operator.process_from(1, side(("d1", 14, 7.0, 3)), us(3))
    found = operator.process_from(0, side(("d1", 10, 1.0, 4)), us(4)).rows
    assert found is not None
    assert found.columns == ["device_id", "ts", "v", "ts_right", "v_right", "__watermark"]
    assert seconds(found, "ts") == [14]  # the later of the two
    assert seconds(found, "ts_right") == [14]
    assert found["__watermark"].to_list() == [us(4)]  # the arriving row's
    assert found.schema["ts"] == TS_TYPE


def test_only_equal_keys_pair_and_a_null_key_pairs_with_nothing() -> None:
    operator = join(within=5)
    operator.process_from(0, side(("d1", 10, 1.0, 0), (None, 10, 2.0, 0)), us(0))
    found = operator.process_from(1, side(("d2", 10, 7.0, 0), (None, 10, 8.0, 0)), us(0))
    assert found.rows is None


def test_a_row_behind_its_watermark_by_more_than_the_lateness_is_late_and_not_joined() -> None:
    operator = join(within=5, lateness=2)
    operator.process_from(0, side(("d1", 20, 1.0, 0)), us(0))
    output = operator.process_from(
        1, side(("d1", 17, 7.0, 19), ("d1", 16.5, 8.0, 19), ("d1", 18, 9.0, 20)), us(20)
    )
    assert output.late is not None
    assert output.late.to_list() == [False, True, False]  # 16.5 < 19 - 2
    assert pairs(output, "v_right") == [(7.0,), (9.0,)]


def test_within_the_lateness_a_row_still_finds_every_partner_it_could_have() -> None:
    # The left row at 10 is kept until the watermark passes 10 + within + lateness = 14.
    operator = join(within=2, lateness=2)
    operator.process_from(0, side(("d1", 10, 1.0, 0)), us(14))
    found = operator.process_from(1, side(("d1", 12, 7.0, 14)), us(14))
    assert pairs(found, "v", "v_right") == [(1.0, 7.0)]
    assert operator.on_watermark(us(14) + 1).rows is None
    assert operator.buffered_rows == 1  # the right row, until 12 + 4
    operator.on_watermark(us(16) + 1)
    assert operator.buffered_rows == 0


def test_buffers_empty_once_the_watermark_passes_far_beyond() -> None:
    operator = join(within=2, how="left")
    operator.process_from(0, side(*((f"d{i % 3}", i, 1.0, 0) for i in range(50))), us(0))
    operator.process_from(1, side(*((f"d{i % 3}", i + 0.5, 1.0, 0) for i in range(50))), us(0))
    assert operator.buffered_rows == 100
    operator.on_watermark(us(1000))
    assert operator.buffered_rows == 0
    state = operator.snapshot()
    assert all(frame.height == 0 for frame in state.frames.values())


def test_the_buffered_rows_stay_flat_however_long_the_streams_are() -> None:
    def peak(total: int) -> int:
        step = StreamJoinStep("j", "a", "b", ("device_id",), s(2), "left")
        run = drive_join(
            StreamJoinOperator(step, s(1)),
            two_streams(total, devices=50, batch=200, rate_per_s=200.0, disorder=s(1)),
            out_of_orderness=s(1),
        )
        assert run.final_buffered == 0
        assert run.late == 0  # the disorder stays within the watermark's lag
        return run.peak_buffered

    short, long = peak(4_000), peak(40_000)
    assert short > 0
    assert long <= short * 1.1  # bounded by the rate and the bounds, not by the length


# -- how: left ---------------------------------------------------------------------------------


def test_left_join_emits_an_unpaired_left_row_with_nulls_once_it_can_no_longer_pair() -> None:
    operator = join(within=2, how="left", lateness=1)
    operator.process_from(0, side(("d1", 10, 1.0, 0)), us(0))
    operator.process_from(1, side(("d2", 10, 7.0, 0)), us(0))
    assert operator.on_watermark(us(13)).rows is None  # 10 + 2 + 1: a row at 12 could still come
    emitted = operator.on_watermark(us(13) + 5).rows
    assert emitted is not None
    assert emitted.columns == ["device_id", "ts", "v", "ts_right", "v_right", "__watermark"]
    assert emitted.select("device_id", "v", "v_right").rows() == [("d1", 1.0, None)]
    assert seconds(emitted, "ts") == [10]
    assert emitted["ts_right"].to_list() == [None]
    assert emitted.schema["ts_right"] == TS_TYPE
    # The watermark that dropped it at the earliest, however late this call came.
    assert emitted["__watermark"].to_list() == [us(13) + 1]


def test_a_left_row_that_paired_is_never_emitted_with_nulls() -> None:
    operator = join(within=2, how="left")
    operator.process_from(0, side(("d1", 10, 1.0, 0), ("d1", 30, 2.0, 0)), us(0))
    found = operator.process_from(1, side(("d1", 11, 7.0, 0)), us(0))
    assert pairs(found, "v", "v_right") == [(1.0, 7.0)]
    assert pairs(operator.on_watermark(MAX_WATERMARK), "v", "v_right") == [(2.0, None)]


def test_a_late_left_row_is_not_emitted_with_nulls_either() -> None:
    operator = join(within=2, how="left")
    output = operator.process_from(0, side(("d1", 10, 1.0, 20)), us(20))
    assert output.late is not None
    assert output.late.to_list() == [True]
    assert operator.on_watermark(MAX_WATERMARK).rows is None


def test_pairs_and_unpaired_rows_of_one_call_come_in_watermark_order() -> None:
    operator = join(within=1, how="left")
    operator.process_from(0, side(("d1", 1, 1.0, 0), ("d2", 9, 2.0, 0)), us(5))
    output = operator.process_from(1, side(("d2", 9.5, 7.0, 9)), us(9))
    assert output.rows is not None
    assert output.rows.select("v", "v_right").rows() == [(1.0, None), (2.0, 7.0)]
    # Dropped at 1 + 1 s, emitted in the round after the one at 5 s: no earlier than 5 s.
    assert output.rows["__watermark"].to_list() == [us(5), us(9)]


def test_a_row_of_the_other_input_later_in_a_round_still_finds_its_partner() -> None:
    # One source batch feeds both inputs: the left's rows come first, with the round's
    # watermark (100 s), then the right's, with the watermarks from before it.
    operator = join(within=2, how="left")
    operator.process_from(0, side(("d1", 10, 1.0, 0)), us(0))
    operator.process_from(0, side(("d1", 99, 2.0, 5)), us(100))
    found = operator.process_from(1, side(("d1", 11, 7.0, 5)), us(100))
    assert pairs(found, "v", "v_right") == [(1.0, 7.0)]
    assert pairs(operator.on_watermark(us(200)), "v", "v_right") == [(2.0, None)]


# -- windowed join -----------------------------------------------------------------------------


def test_a_windowed_join_pairs_the_rows_of_one_window_with_its_bounds() -> None:
    operator = join(None, window=TumblingWindow(s(10)))
    operator.process_from(0, side(("d1", 1, 1.0, 0), ("d1", 9, 2.0, 0)), us(0))
    found = operator.process_from(1, side(("d1", 9.5, 7.0, 0), ("d1", 10.5, 8.0, 0)), us(0))
    assert found.rows is not None
    assert found.rows.select("v", "v_right").rows() == [(1.0, 7.0), (2.0, 7.0)]
    assert seconds(found.rows, "window_start") == [0, 0]
    assert seconds(found.rows, "window_end") == [10, 10]
    assert found.rows.columns[-3:] == ["window_start", "window_end", "__watermark"]


def test_a_hopping_windowed_join_pairs_once_per_window_the_two_share() -> None:
    operator = join(None, window=HoppingWindow(s(10), s(5)))
    operator.process_from(0, side(("d1", 6, 1.0, 0)), us(0))  # in [0, 10) and [5, 15)
    found = operator.process_from(1, side(("d1", 8, 7.0, 0), ("d1", 12, 8.0, 0)), us(0))
    assert found.rows is not None
    got = found.rows.select(pl.col("window_start").cast(pl.Int64) // 1_000_000, "v_right")
    assert sorted(got.rows()) == [(0, 7.0), (5, 7.0), (5, 8.0)]


def test_a_windowed_join_drops_a_window_at_its_end_plus_lateness() -> None:
    operator = join(None, how="left", window=TumblingWindow(s(10)), lateness=2)
    operator.process_from(0, side(("d1", 5, 1.0, 0)), us(0))
    assert operator.on_watermark(us(12) - 1).rows is None
    assert operator.buffered_rows == 1
    emitted = operator.on_watermark(us(12)).rows
    assert emitted is not None
    assert emitted.select("v", "v_right").rows() == [(1.0, None)]
    assert emitted["__watermark"].to_list() == [us(12)]
    assert operator.buffered_rows == 0


def test_a_row_late_for_every_window_it_falls_in_is_late_for_a_windowed_join() -> None:
    operator = join(None, window=HoppingWindow(s(10), s(5)))
    output = operator.process_from(0, side(("d1", 3, 1.0, 10), ("d1", 6, 2.0, 12)), us(12))
    assert output.late is not None
    assert output.late.to_list() == [True, False]  # 3 is only in [-5, 5) and [0, 10)
    assert operator.buffered_rows == 1  # 6 is in [5, 15) only now


# -- state ------------------------------------------------------------------------------------


def test_a_restored_join_continues_exactly_as_the_uninterrupted_one() -> None:
    feed = [
        (0, side(("d1", 10, 1.0, 0), ("d2", 11, 2.0, 0))),
        (1, side(("d1", 11, 7.0, 0), ("d2", 25, 8.0, 0))),
        (0, side(("d2", 24, 3.0, 8), ("d1", 12, 4.0, 8))),
        (1, side(("d1", 13, 9.0, 20))),
    ]

    def run(restart: int | None) -> list[pl.DataFrame]:
        operator = join(within=2, how="left")
        out: list[pl.DataFrame] = []
        for position, (index, batch) in enumerate(feed):
            if position == restart:
                state = checkpointed(operator.snapshot())
                operator = join(within=2, how="left")
                operator.restore(state)
            rows = operator.process_from(index, batch, us(8 * position)).rows
            if rows is not None:
                out.append(rows)
        last = operator.on_watermark(MAX_WATERMARK).rows
        return [*out, *([] if last is None else [last])]

    uninterrupted = run(None)
    for restart in range(len(feed)):
        restored = run(restart)
        assert len(restored) == len(uninterrupted)
        for got, expected in zip(restored, uninterrupted, strict=True):
            assert_frame_equal(got, expected)


def test_the_input_batch_is_not_mutated_and_its_row_index_is_not_passed_on() -> None:
    operator = join(within=2)
    batch = side(("d1", 10, 1.0, 0))
    copy = batch.clone()
    operator.process_from(0, batch, us(0))
    found = operator.process_from(1, side(("d1", 10, 7.0, 0)), us(0)).rows
    assert_frame_equal(batch, copy)
    assert found is not None
    assert "__row" not in found.columns


def test_a_join_reads_inputs_zero_and_one_only() -> None:
    with pytest.raises(ValueError, match="not input 2"):
        join().process_from(2, side(), us(0))


# -- declaration ------------------------------------------------------------------------------

STREAM = Shape(
    OutputKind.STREAM,
    {"device_id": pl.String(), "ts": TS_TYPE, "v": pl.Float64(), "__watermark": pl.Int64()},
    ("device_id",),
)


def refused(**options: object) -> StepError:
    declared: dict[str, object] = {"on": ("device_id",), "within": s(2)} | options
    with pytest.raises(StepError) as raised:
        StreamJoinStep("j", "a", "b", **declared)  # type: ignore[arg-type]
    return raised.value


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"within": None}, "join.within", "within: 10s"),
        ({"window": TumblingWindow(s(60))}, "join.within", "not both"),
        ({"within": None, "window": SessionWindow(s(60))}, "join.window", "tumbling or hopping"),
        ({"within": s(-1)}, "join.within", "negative"),
        ({"how": "outer"}, "join.how", "inner"),
        ({"on": ()}, "join.on", "[device_id]"),
        ({"on": "device_id"}, "join.on", "[device_id]"),
        ({"on": ("ts",)}, "join.on[0]", "ts"),
        ({"suffix": ""}, "join.suffix", "empty"),
    ],
)
def test_a_declaration_that_cannot_work_names_its_field(
    options: dict[str, object], field: str, words: str
) -> None:
    error = refused(**options)
    assert (error.step, error.field) == ("j", field)
    assert words in error.message


def test_the_output_is_a_stream_keyed_by_the_join_key_with_both_sides_columns() -> None:
    other = Shape(
        OutputKind.STREAM,
        {"device_id": pl.String(), "ts": TS_TYPE, "door": pl.String(), "v": pl.Int64()},
        ("device_id",),
    )
    step = StreamJoinStep("j", "a", "b", ("device_id",), window=TumblingWindow(s(60)))
    shape = step.output_shape_of((STREAM, other))
    assert shape.kind is OutputKind.STREAM
    assert shape.key == ("device_id",)
    assert shape.columns == {
        "device_id": pl.String(),
        "ts": TS_TYPE,
        "v": pl.Float64(),
        "ts_right": TS_TYPE,
        "door": pl.String(),
        "v_right": pl.Int64(),
        "window_start": TS_TYPE,
        "window_end": TS_TYPE,
    }
    assert step.inputs == ("a", "b")
    assert step.span == s(60)


@pytest.mark.parametrize(
    ("other", "field", "words"),
    [
        (Shape(OutputKind.TABLE, None, ("device_id",)), "join.stream", "join: {table: b}"),
        (Shape(OutputKind.RESULTS, None, ("device_id",)), "join.stream", "relation"),
        (Shape(OutputKind.STREAM, {"ts": TS_TYPE}), "join.on[0]", "'device_id'"),
        (
            Shape(OutputKind.STREAM, {"device_id": pl.Int64(), "ts": TS_TYPE}),
            "join.on[0]",
            "String on the left and Int64 on the right",
        ),
    ],
)
def test_an_input_a_stream_join_cannot_read_names_the_field(
    other: Shape, field: str, words: str
) -> None:
    step = StreamJoinStep("j", "a", "b", ("device_id",), s(2))
    with pytest.raises(StepError) as raised:
        step.output_shape_of((STREAM, other))
    assert raised.value.field == field
    assert words in raised.value.message


def test_a_suffixed_name_the_left_already_has_asks_for_another_suffix() -> None:
    assert STREAM.columns is not None
    left = Shape(OutputKind.STREAM, {**STREAM.columns, "ts_right": TS_TYPE}, ("device_id",))
    step = StreamJoinStep("j", "a", "b", ("device_id",), s(2))
    with pytest.raises(StepError) as raised:
        step.output_shape_of((left, STREAM))
    assert raised.value.field == "join.suffix"
    assert "'ts_right'" in raised.value.message
    renamed = StreamJoinStep("j", "a", "b", ("device_id",), s(2), suffix="_door")
    assert "ts_door" in (renamed.output_shape_of((left, STREAM)).columns or {})
