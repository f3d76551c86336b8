"""The rule kinds beyond threshold and when: the cases a person looks for first, per kind.

Each test feeds a few readings (times in seconds) and reads the alert transitions back as
``(key, state, severity, at)``; where a kind keeps state (a model, a window of values, a
timer), a snapshot and restore in the middle must change nothing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from datetime import timedelta

import polars as pl
import pytest

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
from sensorstream.engine.steps import Step
from sensorstream.engine.windows import TumblingWindow, WindowStep
from sensorstream.testing import Tick, readings_frame, run_task
from tests.unit.engine.helpers import batch, s, us

Transition = tuple[object, ...]
HAS_RIVER = importlib.util.find_spec("river") is not None
needs_river = pytest.mark.skipif(
    not HAS_RIVER and os.environ.get("CI", "").lower() != "true",
    reason="River is not installed (pip install 'sensorstream[anomaly]'); CI always runs these",
)
QUIET = AlertPolicy(flapping=Flapping(enabled=False))


def plan(*steps: Step, disorder: float = 0, idle: float | None = None) -> EnginePlan:
    event_time = EventTime(
        out_of_orderness=s(disorder), idle_timeout=None if idle is None else s(idle)
    )
    return EnginePlan(("value",), steps, event_time, Dedup(enabled=False))


def rule(
    condition: Condition, *, key: Sequence[str] | None = None, over: str = "readings"
) -> RuleStep:
    if key is None:
        return RuleStep("r", over, condition, policy=QUIET)
    return RuleStep("r", over, condition, key=tuple(key), policy=QUIET, by_input_key=False)


def transitions(plan_: EnginePlan, feed: list[pl.DataFrame | Tick], **run: int) -> list[Transition]:
    """(key, state, severity, seconds) of rule ``r``, by key then time."""
    outputs = run_task(plan_, feed, **run).outputs  # type: ignore[arg-type]
    frames = [o.events["r"] for o in outputs if "r" in o.events and o.events["r"].height]
    if not frames:
        return []
    seconds = (pl.col("event_time").cast(pl.Int64) / 1_000_000).round(6).alias("at")
    rows = pl.concat(frames).select("key", "state", "severity", seconds).rows()
    return sorted(rows, key=lambda row: (str(row[0]), float(row[3])))


def same_after_a_restore(plan_: EnginePlan, feed: list[pl.DataFrame | Tick]) -> list[Transition]:
    """The transitions, checked equal with a snapshot and restore after every feed item."""
    uninterrupted = transitions(plan_, feed)
    for restart in range(len(feed) + 1):
        assert transitions(plan_, feed, restart_after=restart) == uninterrupted, restart
    return uninterrupted


def in_time(*readings: tuple[str, float, float | None]) -> pl.DataFrame:
    """A batch in event-time order (with no disorder allowed, a reading at or behind the
    watermark, even at the same instant as the one before, is late)."""
    return batch(*sorted(readings, key=lambda reading: reading[1]))


D1, D2 = '{"device_id": "d1"}', '{"device_id": "d2"}'
NORTH = '{"district": "north"}'


# -- range --------------------------------------------------------------------------------------
def test_range_judges_each_key_by_its_own_bounds_and_a_key_without_one_never() -> None:
    ranges = Range("value", (("d1", 60.0, 100.0), ("d2", 40.0, 70.0)))
    readings = batch(
        ("d1", 1, 80.0),  # in d1's range
        ("d2", 1.1, 80.0),  # above d2's
        ("d3", 1.2, 500.0),  # d3 has no range
        ("d1", 2, 100.0),  # the bounds are in the range
        ("d1", 3, 101.0),
        ("d2", 4, 50.0),
        ("d1", 5, None),  # a null says nothing
        ("d1", 6, 59.0),  # still out, below now
        ("d1", 7, 60.0),
    )
    assert same_after_a_restore(plan(rule(ranges)), [readings]) == [
        (D1, "firing", "warning", 3.0),
        (D1, "resolved", None, 7.0),
        (D2, "firing", "warning", 1.1),
        (D2, "resolved", None, 4.0),
    ]


# -- unchanged ----------------------------------------------------------------------------------
def test_unchanged_fires_once_a_value_has_held_for_its_duration_and_resolves_on_a_change() -> None:
    still = Unchanged("value", s(30))
    feed: list[pl.DataFrame | Tick] = [
        batch(("d1", 0, 5.0), ("d1", 10, 5.0), ("d1", 29, 5.0)),
        batch(("d1", 30, 5.0), ("d1", 35, None), ("d1", 40, 6.0)),  # a null changes nothing
        batch(("d1", 50, 6.0), ("d1", 69, 6.0), ("d1", 71, 6.0)),
    ]
    assert same_after_a_restore(plan(rule(still)), feed) == [
        (D1, "firing", "warning", 30.0),  # 30 s after the 5 began, not before
        (D1, "resolved", None, 40.0),
        (D1, "firing", "warning", 71.0),  # the 6 began at 40
    ]


# -- rate ---------------------------------------------------------------------------------------
def test_rate_fires_on_a_rise_of_more_than_its_limit_per_minute() -> None:
    rising = Rate("value", timedelta(minutes=1), rise=5.0)
    readings = batch(
        ("d1", 0, 20.0),
        ("d1", 60, 24.0),  # +4 in a minute
        ("d1", 90, 28.0),  # +4 in 30 s: +8 per minute
        ("d1", 150, 29.0),
        ("d1", 210, 34.0),  # exactly +5 per minute is not more than 5
        ("d1", 211, 10.0),  # a fall: only a rise is watched
        ("d2", 300, 0.0),
        ("d2", 301, 1.0),  # +60 per minute
    )
    assert same_after_a_restore(plan(rule(rising)), [readings]) == [
        (D1, "firing", "warning", 90.0),
        (D1, "resolved", None, 150.0),
        (D2, "firing", "warning", 301.0),
    ]


# -- spike --------------------------------------------------------------------------------------
def district_counts(*windows: dict[str, int]) -> list[pl.DataFrame | Tick]:
    """Readings whose 10-second counts per district are ``windows`` (one dict per window)."""
    rows = []
    for index, counts in enumerate(windows):
        for district, count in counts.items():
            rows += [
                {
                    "device_id": f"{district}-{i}",
                    "ts": us(10 * index + i * 0.1),
                    "district": district,
                }
                for i in range(count)
            ]
    rows.sort(key=lambda row: int(row["ts"]))  # type: ignore[call-overload]
    frame = readings_frame(rows, measurements=("value",), tags=("district",))  # type: ignore[arg-type]
    return [frame.with_columns(pl.lit(1.0).alias("value"))]


def per_district(spike: Spike) -> EnginePlan:
    counts = WindowStep("per_10s", TumblingWindow(s(10)), ("district",), (Aggregate("count"),))
    return plan(counts, RuleStep("r", "per_10s", spike, policy=QUIET, judge="final"))


def test_a_group_spike_beyond_an_absolute_count_fires_for_that_group_only() -> None:
    feed = district_counts({"north": 2, "south": 3}, {"north": 6, "south": 3}, {"north": 2})
    assert same_after_a_restore(per_district(Spike("count", above=5)), feed) == [
        (NORTH, "firing", "warning", 19.999999),  # a window's last instant
        (NORTH, "resolved", None, 29.999999),
    ]


def test_a_group_spike_beyond_k_times_its_trailing_baseline_fires() -> None:
    feed = district_counts(
        {"north": 2, "south": 4},
        {"north": 2, "south": 4},
        {"north": 6, "south": 12},  # 3 x 2 and 3 x 4: not beyond 3 times the baseline
        {"north": 14, "south": 4},  # north: 14 > 3 x (2 + 6) / 2
        {"north": 3, "south": 4},
    )
    spike = Spike("count", times=3, baseline=2)
    assert same_after_a_restore(per_district(spike), feed) == [
        (NORTH, "firing", "warning", 39.999999),
        (NORTH, "resolved", None, 49.999999),
    ]


# -- zscore -------------------------------------------------------------------------------------
def test_zscore_fires_beyond_its_bound_against_the_previous_values_only() -> None:
    z = ZScore("value", window=3, above=2.0, min_observations=3)
    readings = batch(
        ("d1", 1, 0.0),
        ("d1", 2, 2.0),
        ("d1", 3, 4.0),
        ("d1", 4, 6.0),  # mean 2, stddev 2: z = 2, not beyond
        ("d1", 5, 9.0),  # against 2, 4, 6: z = 2.5
        ("d1", 6, 6.0),  # against 4, 6, 9: z = -0.2
    )
    assert same_after_a_restore(plan(rule(z)), [readings]) == [
        (D1, "firing", "warning", 5.0),
        (D1, "resolved", None, 6.0),
    ]


def test_zscore_waits_for_its_minimum_and_ignores_a_flat_window() -> None:
    z = ZScore("value", window=5, above=3.0, min_observations=4)
    readings = batch(
        ("d1", 1, 1.0), ("d1", 2, 1.0), ("d1", 3, 1.0), ("d1", 4, 1.0), ("d1", 5, 99.0)
    )
    assert transitions(plan(rule(z)), [readings]) == []  # four equal values: stddev 0


# -- ewma ---------------------------------------------------------------------------------------
def test_ewma_fires_outside_its_band_and_resolves_when_back() -> None:
    band = Ewma("value", alpha=0.5, band=3.0, min_observations=4)
    normal = [10.0, 12.0, 10.0, 12.0, 10.0, 12.0]
    readings = batch(
        *(("d1", t, v) for t, v in enumerate(normal, start=1)),
        ("d1", 7, 30.0),  # far outside the band of a mean near 11
        ("d1", 8, 11.0),
    )
    assert same_after_a_restore(plan(rule(band)), [readings]) == [
        (D1, "firing", "warning", 7.0),
        (D1, "resolved", None, 8.0),
    ]


# -- anomaly ------------------------------------------------------------------------------------
def anomaly_feed() -> list[pl.DataFrame | Tick]:
    normal = [("d1", t, 0.2 + 0.01 * (t % 5)) for t in range(40)]
    return [batch(*normal[:20]), batch(*normal[20:]), batch(("d1", 40, 0.95), ("d1", 41, 0.21))]


@needs_river
def test_anomaly_fires_on_a_value_its_model_finds_anomalous() -> None:
    model = Anomaly(("value",), (("value", 0.0, 1.0),), above=0.7, trees=5, height=4, window=10)
    assert transitions(plan(rule(model)), anomaly_feed()) == [
        (D1, "firing", "warning", 40.0),
        (D1, "resolved", None, 41.0),
    ]


@needs_river
def test_the_anomaly_model_survives_a_restore_and_scores_as_if_never_stopped() -> None:
    model = Anomaly(("value",), (("value", 0.0, 1.0),), above=0.7, trees=5, height=4, window=10)
    feed = anomaly_feed()
    uninterrupted = transitions(plan(rule(model)), feed)
    # A fresh model scores 0 while it fills its first window: only the trained one fires.
    assert transitions(plan(rule(model)), feed, restart_after=2) == uninterrupted
    assert transitions(plan(rule(model)), feed[2:]) == []


# -- deadman ------------------------------------------------------------------------------------
def test_an_event_time_deadman_fires_once_a_key_is_silent_past_its_timeout() -> None:
    quiet = Deadman(s(5))
    feed: list[pl.DataFrame | Tick] = [
        in_time(*(("d1", t, 1.0) for t in range(0, 11, 2)), ("d2", 0.5, 1.0), ("d2", 3, 1.0)),
        batch(*(("d2", t, 1.0) for t in range(12, 30, 3))),  # d1 silent from 10
        batch(("d2", 30, 1.0), ("d1", 31, None)),  # any reading is a sign of life
        batch(("d2", 33, 1.0)),  # then the input ends, which is no passing of time
    ]
    assert same_after_a_restore(plan(rule(quiet)), feed) == [
        (D1, "firing", "warning", 15.0),  # once the watermark (27) is past it
        (D1, "resolved", None, 31.0),
        (D2, "firing", "warning", 8.0),  # silent from 3
        (D2, "resolved", None, 12.0),
    ]


def test_a_fleet_wide_deadman_fires_when_no_data_arrives_at_all() -> None:
    nothing = Deadman(s(5))
    feed: list[pl.DataFrame | Tick] = [
        batch(("d1", 0, 1.0), ("d2", 3, 1.0), ("d1", 6, 1.0)),
        batch(("d3", 30, 1.0)),  # nothing at all from 6 to 30
        batch(("d2", 33, 1.0)),
    ]
    assert same_after_a_restore(plan(rule(nothing, key=[])), feed) == [
        ("{}", "firing", "warning", 11.0),
        ("{}", "resolved", None, 30.0),
    ]


def test_a_fleet_wide_deadman_learns_of_a_quiet_source_through_idleness() -> None:
    nothing = Deadman(s(5))
    feed: list[pl.DataFrame | Tick] = [batch(("d1", 0, 1.0), ("d1", 2, 1.0)), Tick(us(20))]
    idle = plan(rule(nothing, key=[]), idle=10)
    assert transitions(idle, feed, start_us=us(2)) == [("{}", "firing", "warning", 7.0)]


def test_a_processing_time_deadman_fires_on_the_tick_after_a_key_went_silent() -> None:
    quiet = Deadman(s(5), clock="processing")
    feed: list[pl.DataFrame | Tick] = [
        batch(("d1", 0, 1.0), ("d2", 0, 1.0)),  # processed at 0 s
        Tick(us(3)),
        batch(("d2", 1, 1.0)),  # at 3 s: event time plays no part
        Tick(us(7)),  # d1 heard from last at 0: silent since 5
        Tick(us(10)),  # d2 at 3: silent since 8
        batch(("d1", 2, 1.0)),  # at 10 s
    ]
    assert transitions(plan(rule(quiet)), feed) == [
        (D1, "firing", "warning", 5.0),
        (D1, "resolved", None, 10.0),
        (D2, "firing", "warning", 8.0),
    ]


def test_processing_time_deadman_timers_survive_a_restore_and_restart_at_its_first_tick() -> None:
    quiet = Deadman(s(5), clock="processing")
    feed: list[pl.DataFrame | Tick] = [
        batch(("d1", 0, 1.0), ("d2", 0, 1.0)),
        Tick(us(6)),  # both silent since 5
        batch(("d2", 1, 1.0)),  # d2 back at 6
        Tick(us(8)),
        # restored here: down until 30, which is no silence of d2's
        Tick(us(30)),
        Tick(us(34)),
        Tick(us(36)),  # d2 silent since 35, from the restart at 30
        batch(("d1", 2, 1.0)),  # d1 was silent before the restore, and is heard from at 36
    ]
    assert transitions(plan(rule(quiet)), feed, restart_after=4) == [
        (D1, "firing", "warning", 5.0),
        (D1, "resolved", None, 36.0),
        (D2, "firing", "warning", 5.0),
        (D2, "resolved", None, 6.0),
        (D2, "firing", "warning", 35.0),
    ]
    uninterrupted = transitions(plan(rule(quiet)), feed)
    assert (D2, "firing", "warning", 11.0) in uninterrupted  # never down: silent from 11
