"""The relation step: two sides' window results compared per key and window."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.operator import OperatorOutput
from sensorstream.engine.outputs import OutputKind, Shape
from sensorstream.engine.relation import RelationOperator, RelationStep
from sensorstream.engine.steps import StepError
from sensorstream.engine.time import EventTime
from sensorstream.engine.watermarks import MAX_WATERMARK
from sensorstream.engine.windows import SessionWindow, TumblingWindow, WindowStep
from sensorstream.readings import TS_TYPE
from sensorstream.testing import checkpointed, readings_frame
from tests.unit.engine.helpers import s, us

MINUTE = TumblingWindow(s(60))
IN_OUT = RelationStep(
    "in_out",
    "avg_1m",
    "avg_1m",
    "temperature_mean",
    ("room",),
    left_where="side = 'IN'",
    right_where="side = 'OUT'",
)
RESULTS = Shape(
    OutputKind.RESULTS,
    {
        "room": pl.String(),
        "side": pl.String(),
        "window_start": TS_TYPE,
        "window_end": TS_TYPE,
        "temperature_mean": pl.Float64(),
        "count": pl.Int64(),
        "revision": pl.Int64(),
        "final": pl.Boolean(),
        "_op": pl.String(),
    },
    ("room", "side"),
    MINUTE,
)

# room, side, window start (minutes), mean, revision, watermark before (s); op, final
Result = tuple[str, str, int, float | None, int, float]


def results(*rows: Result, op: str = "upsert", final: bool = True) -> pl.DataFrame:
    """Window results as a step reading them sees them: observations at their window's end."""
    starts = [us(60 * r[2]) for r in rows]
    return pl.DataFrame(
        {
            "room": [r[0] for r in rows],
            "side": [r[1] for r in rows],
            "window_start": pl.Series(starts, dtype=pl.Int64).cast(TS_TYPE),
            "window_end": pl.Series([t + us(60) for t in starts], dtype=pl.Int64).cast(TS_TYPE),
            "temperature_mean": pl.Series([r[3] for r in rows], dtype=pl.Float64),
            "revision": pl.Series([r[4] for r in rows], dtype=pl.Int64),
            "final": [final] * len(rows),
            "_op": [op] * len(rows),
            "__opened_late": [False] * len(rows),
            "ts": pl.Series([t + us(60) - 1 for t in starts], dtype=pl.Int64).cast(TS_TYPE),
            "__watermark": pl.Series([us(r[5]) for r in rows], dtype=pl.Int64),
        }
    )


def relation(lateness: float = 0) -> RelationOperator:
    operator = IN_OUT.build_of((RESULTS, RESULTS), EventTime(allowed_lateness=s(lateness)))
    assert isinstance(operator, RelationOperator)
    return operator


def both(operator: RelationOperator, batch: pl.DataFrame, watermark: float) -> OperatorOutput:
    """What the task does when both inputs are one step: the same rows to each input."""
    first = operator.process_from(0, batch, us(watermark))
    second = operator.process_from(1, batch, us(watermark))
    frames = [o.rows for o in (first, second) if o.rows is not None]
    return OperatorOutput(rows=pl.concat(frames) if frames else None)


def table(output: OperatorOutput, *columns: str) -> list[tuple[object, ...]]:
    if output.rows is None:
        return []
    start = (pl.col("window_start").cast(pl.Int64) // us(60)).alias("minute")
    return list(output.rows.select("room", start, *columns).iter_rows())


def test_a_relation_row_comes_once_both_sides_of_a_window_are_there() -> None:
    operator = relation()
    assert operator.process_from(0, results(("r1", "IN", 0, 21.0, 0, 0)), us(60)).rows is None
    output = operator.process_from(1, results(("r1", "OUT", 0, 7.0, 0, 0)), us(60))
    assert table(output, "left", "right", "difference", "ratio", "revision", "final", "_op") == [
        ("r1", 0, 21.0, 7.0, 14.0, 3.0, 0, True, "upsert")
    ]
    assert output.rows is not None
    assert output.rows.columns == [
        "room",
        "window_start",
        "window_end",
        "left",
        "right",
        "difference",
        "ratio",
        "revision",
        "final",
        "_op",
        "__opened_late",
    ]


def test_one_step_read_twice_is_split_by_the_two_where_filters() -> None:
    batch = results(("r1", "IN", 0, 20.0, 0, 0), ("r1", "OUT", 0, 5.0, 0, 0))
    batch = pl.concat([batch, results(("r2", "IN", 0, 18.0, 0, 0), ("r3", "OUT", 0, 1.0, 0, 0))])
    output = both(relation(), batch, 60)
    assert table(output, "left", "right", "difference") == [("r1", 0, 20.0, 5.0, 15.0)]


def test_a_corrected_side_emits_the_row_again_with_the_next_revision() -> None:
    operator = relation(lateness=30)
    both(operator, results(("r1", "IN", 0, 20.0, 0, 0), ("r1", "OUT", 0, 5.0, 0, 0)), 60)
    corrected = both(operator, results(("r1", "OUT", 0, 4.0, 1, 60)), 70)
    assert table(corrected, "right", "difference", "ratio", "revision") == [
        ("r1", 0, 4.0, 16.0, 5.0, 1)
    ]
    again = both(operator, results(("r1", "IN", 0, 24.0, 2, 70)), 80)
    assert table(again, "left", "revision") == [("r1", 0, 24.0, 2)]


def test_the_ratio_is_null_when_the_right_side_is_zero_or_null() -> None:
    batch = results(
        ("r1", "IN", 0, 20.0, 0, 0),
        ("r1", "OUT", 0, 0.0, 0, 0),
        ("r2", "IN", 0, 20.0, 0, 0),
        ("r2", "OUT", 0, None, 0, 0),
        ("r3", "IN", 0, None, 0, 0),
        ("r3", "OUT", 0, 2.0, 0, 0),
    )
    output = both(relation(), batch, 60)
    assert table(output, "difference", "ratio") == [
        ("r1", 0, 20.0, None),
        ("r2", 0, None, None),
        ("r3", 0, None, None),
    ]


def test_a_window_one_side_lacks_comes_out_with_nulls_once_its_lateness_is_over() -> None:
    operator = relation(lateness=30)
    assert both(operator, results(("r1", "IN", 0, 20.0, 0, 0)), 60).rows is None
    assert operator.on_watermark(us(90) - 1).rows is None  # the other side may still come
    output = operator.on_watermark(us(90))
    assert table(output, "left", "right", "difference", "revision", "final", "_op") == [
        ("r1", 0, 20.0, None, None, 0, True, "upsert")
    ]
    assert output.rows is not None
    assert output.rows["__opened_late"].to_list() == [True]  # after later windows, maybe
    assert operator.buffered_rows == 0


def test_a_round_that_brings_one_side_only_ends_with_the_one_sided_windows() -> None:
    # The end of input: only the left side's last results come, then the round closes.
    operator = relation()
    output = operator.process_from(0, results(("r1", "IN", 0, 20.0, 0, 0)), MAX_WATERMARK)
    assert output.rows is None  # the right side's results could still come in this round
    closed = operator.on_watermark(MAX_WATERMARK)
    assert table(closed, "left", "right") == [("r1", 0, 20.0, None)]


def test_a_window_both_sides_had_is_not_emitted_again_when_it_expires() -> None:
    operator = relation()
    both(operator, results(("r1", "IN", 0, 20.0, 0, 0), ("r1", "OUT", 0, 5.0, 0, 0)), 60)
    assert operator.on_watermark(MAX_WATERMARK).rows is None
    assert operator.buffered_rows == 0


def test_a_retracted_side_retracts_the_row_and_the_window_comes_out_with_nulls() -> None:
    operator = relation(lateness=30)
    both(operator, results(("r1", "IN", 0, 20.0, 0, 0), ("r1", "OUT", 0, 5.0, 0, 0)), 60)
    retracted = both(operator, results(("r1", "OUT", 0, None, 1, 60), op="delete"), 70)
    assert table(retracted, "revision", "_op") == [("r1", 0, 1, "delete")]
    expired = operator.on_watermark(us(90))
    assert table(expired, "left", "right", "revision", "_op") == [
        ("r1", 0, 20.0, None, 2, "upsert")
    ]


def test_results_of_a_window_past_its_lateness_are_late_for_the_relation() -> None:
    operator = relation(lateness=10)
    output = operator.process_from(
        0, results(("r1", "IN", 0, 20.0, 1, 70), ("r1", "IN", 1, 20.0, 0, 70)), us(120)
    )
    assert output.late is not None
    assert output.late.to_list() == [True, False]


def test_final_says_both_sides_are_final() -> None:
    operator = relation(lateness=30)
    operator.process_from(0, results(("r1", "IN", 0, 20.0, 0, 0), final=False), us(30))
    early = operator.process_from(1, results(("r1", "OUT", 0, 5.0, 0, 0)), us(30))
    assert table(early, "final") == [("r1", 0, False)]


def test_a_relation_reads_real_window_results() -> None:
    window = WindowStep("avg_1m", MINUTE, ("room", "side"), (Aggregate("mean", "temperature"),))
    minute = window.build(Shape(OutputKind.STREAM), EventTime())
    readings = readings_frame(
        [
            {"device_id": "a", "ts": us(10), "temperature": 20.0, "room": "r1", "side": "IN"},
            {"device_id": "b", "ts": us(20), "temperature": 8.0, "room": "r1", "side": "OUT"},
            {"device_id": "c", "ts": us(30), "temperature": 22.0, "room": "r1", "side": "IN"},
        ],
        measurements=("temperature",),
        tags=("room", "side"),
    ).with_columns(pl.lit(0, pl.Int64).alias("__watermark"))
    closed = minute.process(readings, us(61)).rows
    assert closed is not None
    observed = closed.with_columns(
        (pl.col("window_end").cast(pl.Int64) - 1).cast(TS_TYPE).alias("ts"),
        pl.lit(0, pl.Int64).alias("__watermark"),
    )
    output = both(relation(), observed, 61)
    assert table(output, "left", "right", "difference") == [("r1", 0, 21.0, 8.0, 13.0)]


def test_a_restored_relation_continues_exactly_as_the_uninterrupted_one() -> None:
    feed = [
        (results(("r1", "IN", 0, 20.0, 0, 0), ("r2", "IN", 0, 1.0, 0, 0)), 60),
        (results(("r1", "OUT", 0, 5.0, 0, 60)), 65),
        (results(("r1", "IN", 0, 21.0, 1, 65), ("r1", "OUT", 1, 3.0, 0, 65)), 120),
        (results(("r1", "IN", 1, 30.0, 0, 120)), 200),
    ]

    def run(restart: int | None) -> list[pl.DataFrame]:
        operator = relation(lateness=30)
        out: list[pl.DataFrame] = []
        for position, (batch, watermark) in enumerate(feed):
            if position == restart:
                state = checkpointed(operator.snapshot())
                operator = relation(lateness=30)
                operator.restore(state)
            rows = both(operator, batch, watermark).rows
            if rows is not None:
                out.append(rows)
        last = operator.on_watermark(MAX_WATERMARK).rows
        return [*out, *([] if last is None else [last])]

    uninterrupted = run(None)
    # r1's minute 0; its correction; r1's minute 1 with r2's minute 0, which only IN had.
    assert [len(frame) for frame in uninterrupted] == [1, 1, 2]
    for restart in range(len(feed)):
        restored = run(restart)
        assert len(restored) == len(uninterrupted)
        for got, expected in zip(restored, uninterrupted, strict=True):
            assert_frame_equal(got, expected)


# -- declaration ------------------------------------------------------------------------------


def test_the_output_is_results_keyed_by_the_key_and_window_of_the_sides() -> None:
    shape = IN_OUT.output_shape_of((RESULTS, RESULTS))
    assert shape.kind is OutputKind.RESULTS
    assert shape.key == ("room",)
    assert shape.window == MINUTE
    assert list(shape.columns or {}) == [
        "room",
        "window_start",
        "window_end",
        "left",
        "right",
        "difference",
        "ratio",
        "revision",
        "final",
        "_op",
    ]
    assert IN_OUT.inputs == ("avg_1m", "avg_1m")
    assert IN_OUT.input == "avg_1m"


def other(**changes: object) -> Shape:
    columns = changes.pop("columns", RESULTS.columns)
    return Shape(
        changes.pop("kind", OutputKind.RESULTS),  # type: ignore[arg-type]
        columns,  # type: ignore[arg-type]
        changes.pop("key", RESULTS.key),  # type: ignore[arg-type]
        changes.pop("window", MINUTE),
    )


@pytest.mark.parametrize(
    ("step", "right", "field", "words"),
    [
        (IN_OUT, other(kind=OutputKind.STREAM), "relation.right", "emits stream"),
        (IN_OUT, other(window=TumblingWindow(s(30))), "relation.right", "same window"),
        (IN_OUT, other(window=SessionWindow(s(30))), "relation.right", "session"),
        (
            RelationStep("r", "a", "b", "humidity_mean", ("room",), "side = 'IN'", "side = 'OUT'"),
            RESULTS,
            "relation.value",
            "'humidity_mean'",
        ),
        (
            RelationStep("r", "a", "b", "side", ("room",), "side = 'IN'", "side = 'OUT'"),
            RESULTS,
            "relation.value",
            "not a number",
        ),
        (
            RelationStep("r", "a", "b", "count", ("floor",), "side = 'IN'", "side = 'OUT'"),
            RESULTS,
            "relation.key[0]",
            "'floor'",
        ),
        (
            RelationStep("r", "a", "b", "count", ("room",), "side = 'IN'", "site = 'OUT'"),
            RESULTS,
            "relation.right_where",
            "'site'",
        ),
        (
            RelationStep("r", "a", "b", "count", ("room",), "side = 'IN'"),
            RESULTS,
            "relation.key",
            "side in the key or in right_where",
        ),
    ],
)
def test_inputs_a_relation_cannot_compare_name_the_field(
    step: RelationStep, right: Shape, field: str, words: str
) -> None:
    with pytest.raises(StepError) as raised:
        step.output_shape_of((RESULTS, right))
    assert raised.value.field == field
    assert words in raised.value.message


def test_a_filter_that_is_not_sql_or_a_key_the_relation_adds_is_refused() -> None:
    with pytest.raises(StepError, match=r"relation\.left_where: cannot read"):
        RelationStep("r", "a", "b", "v", ("room",), left_where="side = = 'IN'")
    with pytest.raises(StepError, match=r"relation\.key\[0\]: 'ratio' is a column"):
        RelationStep("r", "a", "b", "v", ("ratio",))
