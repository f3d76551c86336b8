"""A threshold rule and its alerts against a per-event model, on random out-of-order streams.

Random streams (disordered, with late readings and repeats), cut into random batches, with
a snapshot and restore at a random point: the transitions must be exactly the model's.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.engine.plan import Dedup, EnginePlan, EventTime
from sensorstream.engine.rules import AlertPolicy, Flapping, RuleStep, Threshold
from sensorstream.testing import batch_sizes, reading_streams, readings_frame, run_task, split
from tests.property.rules_reference import RuleModel, Transition, transitions

BOUNDS = (("notice", 1.0), ("warning", 2.0), ("critical", 3.0))


@st.composite
def models(draw: st.DrawFn) -> RuleModel:
    return RuleModel(
        rule="r",
        bounds=BOUNDS,
        clear=draw(st.sampled_from([0.0, 0.5])),
        consecutive=draw(st.integers(1, 3)),
        hold_us=draw(st.sampled_from([0, 1_000_000, 3_000_000])),
        out_of_orderness_us=draw(st.sampled_from([0, 2_000_000, 5_000_000])),
        flapping_changes=draw(st.integers(2, 4)),
        within_us=draw(st.sampled_from([5_000_000, 20_000_000])),
        settle_us=draw(st.sampled_from([2_000_000, 10_000_000])),
        flapping=draw(st.booleans()),
    )


def plan_of(model: RuleModel) -> EnginePlan:
    rule = RuleStep(
        model.rule,
        "readings",
        Threshold("value", BOUNDS, clear=model.clear),
        policy=AlertPolicy(
            consecutive=model.consecutive,
            hold=timedelta(microseconds=model.hold_us),
            flapping=Flapping(
                changes=model.flapping_changes,
                within=timedelta(microseconds=model.within_us),
                settle=timedelta(microseconds=model.settle_us),
                enabled=model.flapping,
            ),
        ),
    )
    event_time = EventTime(
        out_of_orderness=timedelta(microseconds=model.out_of_orderness_us),
        idle_timeout=None,
    )
    return EnginePlan(("value",), (rule,), event_time, Dedup(enabled=False))


def engine_transitions(frames: list[pl.DataFrame]) -> list[Transition]:
    events = [frame for frame in frames if frame.height]
    if not events:
        return []
    table = pl.concat(events).with_columns(
        pl.col("event_time").cast(pl.Int64), pl.col("started_at").cast(pl.Int64)
    )
    rows = table.select(
        "key",
        "state",
        "previous_state",
        "severity",
        "event_time",
        "started_at",
        "sequence",
        "alert_id",
    ).rows()
    return sorted(rows, key=lambda r: (r[0], r[4], r[6]))


def _reading(row: dict[str, object]) -> tuple[str, int, float | None]:
    ts, value = row["ts"], row["value"]
    assert isinstance(ts, int)
    assert value is None or isinstance(value, float)
    return str(row["device_id"]), ts, value


@settings(max_examples=150)
@given(
    models(),
    reading_streams(measurements=("value",), max_readings=40, late_percent=15),
    st.data(),
)
def test_a_threshold_rule_reports_exactly_what_the_per_event_model_does(
    model: RuleModel, stream: list[dict[str, object]], data: st.DataObject
) -> None:
    values = st.sampled_from([0.0, 0.5, 1.0, 1.7, 2.0, 2.6, 3.0, 3.5])
    rows = [
        {**row, "value": data.draw(values) if row.get("value") is not None else None}
        for row in stream
    ]
    batches = split(rows, data.draw(batch_sizes(len(rows), max_batches=5)))
    feed = [readings_frame(part, measurements=("value",)) for part in batches]  # type: ignore[arg-type]
    restart = data.draw(st.none() | st.integers(0, len(feed)))
    run = run_task(plan_of(model), feed, restart_after=restart)
    actual = engine_transitions(
        [output.events["r"] for output in run.outputs if "r" in output.events]
    )
    expected = sorted(
        transitions(model, [_reading(row) for row in rows]),
        key=lambda r: (r[0], r[4], r[6]),
    )
    assert actual == expected
