"""Every rule kind and its alerts against the per-event model, on random out-of-order streams.

As for the threshold (``test_rules_match_reference``): random streams with late readings
and repeats, cut into random batches, with a snapshot and restore at a random point, under
a random lifecycle policy; the transitions must be exactly the model's. The spike is judged
over a window step's results, so its model starts from that step's final results.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime
from sensorstream.engine.rules import (
    AlertPolicy,
    Anomaly,
    Condition,
    Deadman,
    Ewma,
    Flapping,
    Range,
    Rate,
    RuleStep,
    Spike,
    Unchanged,
    ZScore,
)
from sensorstream.engine.rules.lifecycle import key_text
from sensorstream.engine.time import micros_of
from sensorstream.engine.windows import TumblingWindow, WindowStep
from sensorstream.testing import (
    Tick,
    batch_sizes,
    reading_streams,
    readings_frame,
    run_task,
    split,
)
from tests.property import rule_kinds_reference as kinds
from tests.property.rules_reference import (
    RuleModel,
    Transition,
    final_watermark,
    in_time,
    lifecycle,
)
from tests.property.test_rules_match_reference import engine_transitions, models

SECOND = 1_000_000
Values = list[tuple[int, float | None]]
HAS_RIVER = importlib.util.find_spec("river") is not None
needs_river = pytest.mark.skipif(
    not HAS_RIVER and os.environ.get("CI", "").lower() != "true",
    reason="River is not installed (pip install 'sensorstream[anomaly]'); CI always runs these",
)


@dataclass(frozen=True)
class Case:
    """A condition, how the rule groups, and the model of one key's levels."""

    condition: Condition
    levels: Callable[[Values, str, int], kinds.Points]  # values, device, final watermark
    fleet: bool = False  # key: [] (every device together)
    keeps_nulls: bool = False  # judged on null values too (no value column)


@st.composite
def cases(draw: st.DrawFn, kind: str) -> Case:
    if kind == "range":
        spans = {"d1": (60.0, 100.0), "d2": (55.0, 75.0)}
        condition: Condition = Range("value", tuple((k, lo, hi) for k, (lo, hi) in spans.items()))
        return Case(
            condition, lambda values, device, _: kinds.range_levels(spans.get(device), values)
        )
    if kind == "unchanged":
        hold = draw(st.sampled_from([SECOND, 3 * SECOND]))
        condition = Unchanged("value", timedelta(microseconds=hold))
        return Case(
            condition, lambda values, *_: kinds.unchanged_levels(hold, values), keeps_nulls=True
        )
    if kind == "rate":
        per = draw(st.sampled_from([SECOND, 60 * SECOND]))
        rise = draw(st.sampled_from([None, 0.5, 2.0]))
        fall = draw(st.sampled_from([1.0, None] if rise is not None else [1.0]))
        condition = Rate("value", timedelta(microseconds=per), rise, fall)
        return Case(condition, lambda values, *_: kinds.rate_levels(per, rise, fall, values))
    if kind == "zscore":
        window = draw(st.integers(2, 6))
        least = draw(st.integers(2, window))
        above = draw(st.sampled_from([1.0, 2.0, None]))
        below = draw(st.sampled_from([-1.5, None] if above is not None else [-1.5]))
        condition = ZScore("value", window, above, below, least)
        return Case(
            condition, lambda values, *_: kinds.zscore_levels(window, above, below, least, values)
        )
    if kind == "ewma":
        alpha = draw(st.sampled_from([0.1, 0.3, 0.5, 1 / 3]))
        band = draw(st.sampled_from([1.0, 2.0]))
        least = draw(st.integers(2, 4))
        condition = Ewma("value", alpha, band, least)
        return Case(condition, lambda values, *_: kinds.ewma_levels(alpha, band, least, values))
    if kind == "anomaly":
        anomaly = Anomaly(
            ("value",), (("value", 0.0, 1.0),), above=0.6, trees=3, height=3, window=4
        )

        def scored(values: Values, *_: object) -> kinds.Points:
            return kinds.anomaly_levels(anomaly.model(), "value", anomaly.above, values)

        return Case(anomaly, scored)
    timeout = draw(st.sampled_from([SECOND, 2 * SECOND, 5 * SECOND]))
    condition = Deadman(timedelta(microseconds=timeout))

    def silences(values: Values, _: str, watermark: int) -> kinds.Points:
        return kinds.deadman_points(timeout, sorted(ts for ts, _ in values), watermark)

    return Case(condition, silences, fleet=kind == "deadman_fleet", keeps_nulls=True)


VALUES: dict[str, list[float]] = {
    "range": [50.0, 55.0, 60.0, 75.0, 100.0, 101.0],
    "unchanged": [0.0, 1.0, 2.0],
    "rate": [0.0, 0.5, 1.0, 3.0, 10.0],
    "zscore": [1.0, 1.25, 1.5, 2.0, 10.0],
    "ewma": [1.0, 1.25, 1.5, 2.0, 10.0],
    "anomaly": [0.1, 0.2, 0.3, 0.25, 0.95],
    "deadman": [1.0],
    "deadman_fleet": [1.0],
}


def plan_of(model: RuleModel, case: Case) -> EnginePlan:
    rule = RuleStep(
        model.rule,
        "readings",
        case.condition,
        key=(),
        by_input_key=not case.fleet,
        policy=policy_of(model),
    )
    event_time = EventTime(
        out_of_orderness=timedelta(microseconds=model.out_of_orderness_us), idle_timeout=None
    )
    return EnginePlan(("value",), (rule,), event_time, Dedup(enabled=False))


def policy_of(model: RuleModel) -> AlertPolicy:
    return AlertPolicy(
        consecutive=model.consecutive,
        hold=timedelta(microseconds=model.hold_us),
        flapping=Flapping(
            changes=model.flapping_changes,
            within=timedelta(microseconds=model.within_us),
            settle=timedelta(microseconds=model.settle_us),
            enabled=model.flapping,
        ),
    )


def expected(model: RuleModel, case: Case, rows: list[dict[str, object]]) -> list[Transition]:
    readings = [(str(r["device_id"]), int(r["ts"]), r["value"]) for r in rows]  # type: ignore[call-overload]
    taken = in_time(readings, model.out_of_orderness_us)  # type: ignore[arg-type]
    watermark = final_watermark(readings, model.out_of_orderness_us)  # type: ignore[arg-type]
    groups: dict[str, Values] = {}
    for device, observations in taken.items():
        values = [(ts, v) for ts, _, v in observations if case.keeps_nulls or v is not None]
        if case.fleet:
            groups.setdefault("", []).extend(values)
        else:
            groups[device] = values
    out: list[Transition] = []
    for device, values in sorted(groups.items()):
        text = key_text({} if case.fleet else {"device_id": device})
        points = case.levels(values, device, watermark)
        out += lifecycle(model, text, points, case.condition.severities)
    return sorted(out, key=lambda r: (r[0], r[4], r[6]))


def check(
    kind: str, model: RuleModel, stream: list[dict[str, object]], data: st.DataObject
) -> None:
    case = data.draw(cases(kind))
    values = st.sampled_from(VALUES[kind])
    rows = [
        {**row, "value": data.draw(values) if row.get("value") is not None else None}
        for row in stream
    ]
    batches = split(rows, data.draw(batch_sizes(len(rows), max_batches=5)))
    feed = [readings_frame(part, measurements=("value",)) for part in batches]  # type: ignore[arg-type]
    restart = data.draw(st.none() | st.integers(0, len(feed)))
    run = run_task(plan_of(model, case), feed, restart_after=restart)
    actual = engine_transitions([o.events["r"] for o in run.outputs if "r" in o.events])
    assert actual == expected(model, case, rows)


streams = reading_streams(measurements=("value",), max_readings=40, late_percent=15)


@settings(max_examples=100)
@pytest.mark.parametrize(
    "kind", ["range", "unchanged", "rate", "zscore", "ewma", "deadman", "deadman_fleet"]
)
@given(models(), streams, st.data())
def test_each_rule_kind_reports_exactly_what_the_per_event_model_does(
    kind: str, model: RuleModel, stream: list[dict[str, object]], data: st.DataObject
) -> None:
    check(kind, model, stream, data)


@needs_river
@settings(max_examples=30)
@given(models(), streams, st.data())
def test_the_anomaly_model_scores_as_river_does_one_event_at_a_time(
    model: RuleModel, stream: list[dict[str, object]], data: st.DataObject
) -> None:
    check("anomaly", model, stream, data)


@settings(max_examples=100)
@given(
    models(),
    reading_streams(measurements=("value",), max_readings=40, late_percent=15),
    st.data(),
)
def test_a_spike_over_window_results_reports_what_the_model_of_its_final_results_does(
    model: RuleModel, stream: list[dict[str, object]], data: st.DataObject
) -> None:
    values = st.sampled_from([0.0, 1.0, 2.0, 5.0])
    rows = [
        {**row, "value": data.draw(values) if row.get("value") is not None else None}
        for row in stream
    ]
    aggregate = data.draw(st.sampled_from([Aggregate("count"), Aggregate("sum", "value")]))
    output = aggregate.name
    above = data.draw(st.sampled_from([None, 6.0]))
    times = data.draw(st.sampled_from([1.5, 2.0] if above is None else [None, 2.0]))
    baseline = data.draw(st.integers(1, 3))
    window = WindowStep("w", TumblingWindow(timedelta(seconds=2)), ("site",), (aggregate,))
    rule = RuleStep(
        "r", "w", Spike(output, above, times, baseline), policy=policy_of(model), judge="final"
    )
    lateness = data.draw(st.sampled_from([0, 2 * SECOND]))
    event_time = EventTime(
        out_of_orderness=timedelta(microseconds=model.out_of_orderness_us),
        allowed_lateness=timedelta(microseconds=lateness),
        idle_timeout=None,
    )
    plan = EnginePlan(("value",), (window, rule), event_time, Dedup(enabled=False))
    batches = split(rows, data.draw(batch_sizes(len(rows), max_batches=5)))
    feed = [readings_frame(part, measurements=("value",), tags=("site",)) for part in batches]  # type: ignore[arg-type]
    run = run_task(plan, feed, restart_after=data.draw(st.none() | st.integers(0, len(feed))))
    actual = engine_transitions([o.events["r"] for o in run.outputs if "r" in o.events])

    results = run.results()["w"]
    out: list[Transition] = []
    if results.height:
        for (site,), group in results.sort("window_end").group_by(["site"], maintain_order=True):
            points = [
                (micros_of(end) - 1, float(v))
                for end, v in group.select("window_end", output).rows()
                if v is not None
            ]
            levels = kinds.spike_levels(above, times, baseline, points)
            out += lifecycle(model, key_text({"site": site}), levels, ("warning",))
    assert actual == sorted(out, key=lambda r: (r[0], r[4], r[6]))


@settings(max_examples=100)
@given(models(), st.data())
def test_a_processing_time_deadman_reports_what_the_model_of_its_arrivals_and_ticks_does(
    model: RuleModel, data: st.DataObject
) -> None:
    timeout = data.draw(st.sampled_from([SECOND, 3 * SECOND]))
    fleet = data.draw(st.booleans())
    now = 0
    rounds: list[tuple[int, list[str]]] = []
    feed: list[pl.DataFrame | Tick] = []
    for _ in range(data.draw(st.integers(0, 14))):
        if data.draw(st.booleans()):
            now += data.draw(st.sampled_from([0, SECOND // 2, SECOND, 2 * SECOND, 7 * SECOND]))
            feed.append(Tick(now))
            rounds.append((now, []))
        else:
            devices = data.draw(st.lists(st.sampled_from(["d1", "d2", "d3"]), min_size=1))
            # Event time plays no part: the readings may be late, out of order, repeated.
            rows = [{"device_id": d, "ts": data.draw(st.integers(0, 9)) * SECOND} for d in devices]
            feed.append(readings_frame(rows, measurements=("value",)))  # type: ignore[arg-type]
            rounds.append((now, devices if not fleet else [""]))
    restart = data.draw(st.none() | st.integers(0, len(feed)))
    condition = Deadman(timedelta(microseconds=timeout), clock="processing")
    case = Case(condition, lambda *_: [], fleet=fleet)
    run = run_task(plan_of(model, case), feed, restart_after=restart)
    actual = engine_transitions([o.events["r"] for o in run.outputs if "r" in o.events])

    out: list[Transition] = []
    points = kinds.processing_deadman_points(timeout, rounds, restart)
    for device, levels in sorted(points.items()):
        text = key_text({} if fleet else {"device_id": device})
        out += lifecycle(model, text, levels, condition.severities, end=now)
    assert actual == sorted(out, key=lambda r: (r[0], r[4], r[6]))
