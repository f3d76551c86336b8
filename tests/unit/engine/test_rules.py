"""Rules and the alert lifecycle: the cases a person looks for first."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime
from sensorstream.engine.rules import AlertPolicy, Expression, Flapping, RuleStep, Threshold
from sensorstream.engine.task import PartitionTask
from sensorstream.engine.windows import TumblingWindow, WindowStep
from sensorstream.testing import run_task
from tests.unit.engine.helpers import batch, s

HOT = Threshold("value", (("warning", 20.0), ("critical", 30.0)))


def plan(*steps: RuleStep | WindowStep, lateness: float = 0, disorder: float = 0) -> EnginePlan:
    event_time = EventTime(
        out_of_orderness=s(disorder), allowed_lateness=s(lateness), idle_timeout=None
    )
    return EnginePlan(("value",), steps, event_time, Dedup(enabled=False))


def rule(
    condition: Threshold | Expression = HOT,
    *,
    consecutive: int = 1,
    hold: timedelta = timedelta(0),
    flapping: Flapping | None = None,
) -> RuleStep:
    policy = AlertPolicy(consecutive, hold, flapping or Flapping())
    return RuleStep("hot", "readings", condition, policy=policy)


def transitions(events: list[pl.DataFrame]) -> list[tuple[object, ...]]:
    frames = [frame for frame in events if frame.height]
    if not frames:
        return []
    table = pl.concat(frames).sort("event_time", "sequence")
    seconds = (pl.col("event_time").cast(pl.Int64) // 1_000_000).alias("at")
    return table.select("state", "severity", seconds, "kind").rows()


def events_of(plan_: EnginePlan, *batches: pl.DataFrame) -> list[tuple[object, ...]]:
    run = run_task(plan_, list(batches))
    return transitions([output.events["hot"] for output in run.outputs if "hot" in output.events])


def test_an_alert_reports_state_and_severity_changes_only_never_a_repeat() -> None:
    readings = batch(
        *(("d1", t, 25.0) for t in range(1, 50)),
        ("d1", 50, 35.0),
        ("d1", 51, 36.0),
        ("d1", 60, 5.0),
    )
    assert events_of(plan(rule()), readings) == [
        ("firing", "warning", 1, "transition"),
        ("firing", "critical", 50, "transition"),
        ("resolved", None, 60, "transition"),
    ]


def test_a_value_hovering_at_a_bound_gives_one_flapping_alert_not_a_storm() -> None:
    hovering = [("d1", t, 21.0 if t % 2 else 19.0) for t in range(1, 200)]
    flapping = Flapping(changes=4, within=timedelta(minutes=1), settle=timedelta(seconds=30))
    events = events_of(plan(rule(flapping=flapping)), batch(*hovering), batch(("d1", 300, 5.0)))
    states = [state for state, _, _, _ in events]
    assert states.count("flapping") == 1
    assert len(events) <= 4 + 3  # a few changes, the flapping one, and it settling once
    assert states[-1] == "resolved"  # quiet for 30 s after the last change at 199: settled


def test_hysteresis_keeps_a_hovering_value_from_flapping_at_all() -> None:
    hovering = [("d1", t, 20.5 if t % 2 else 19.5) for t in range(1, 200)]
    damped = Threshold("value", (("warning", 20.0),), clear=1.0)
    assert events_of(plan(rule(damped)), batch(*hovering)) == [
        ("firing", "warning", 1, "transition")
    ]


def test_consecutive_and_for_delay_firing_and_a_pending_alert_may_never_fire() -> None:
    readings = batch(
        ("d1", 1, 25.0),
        ("d1", 2, 25.0),
        ("d1", 3, 5.0),
        ("d1", 10, 25.0),
        ("d1", 12, 26.0),
        ("d1", 17, 27.0),
    )
    assert events_of(plan(rule(consecutive=2, hold=timedelta(seconds=5))), readings) == [
        ("pending", "warning", 1, "transition"),
        ("resolved", None, 3, "transition"),  # it never fired
        ("pending", "warning", 10, "transition"),
        ("firing", "warning", 15, "transition"),  # held from 10 for 5 s
    ]


def test_a_held_breach_fires_on_the_watermark_even_with_no_further_reading_of_its_key() -> None:
    held = rule(hold=timedelta(seconds=5))
    task = PartitionTask(plan(held))
    first = task.process(batch(("d1", 1, 25.0)), 0)
    assert transitions([first.events["hot"]]) == [("pending", "warning", 1, "transition")]
    assert "hot" not in task.process(batch(("d2", 5, 1.0)), 0).events  # watermark 5: not yet
    fired = task.process(batch(("d2", 9, 1.0)), 0)
    assert transitions([fired.events["hot"]]) == [("firing", "warning", 6, "transition")]


def test_a_reading_behind_the_watermark_is_late_for_the_rule_and_never_judged() -> None:
    task = PartitionTask(plan(rule(), disorder=2))
    task.process(batch(("d1", 10, 1.0)), 0)  # watermark 8
    output = task.process(batch(("d1", 7, 99.0), ("d1", 9, 1.0)), 0)
    assert output.late_count == 1
    assert output.late is not None
    assert output.late.select("late_for").item() == "hot"
    assert "hot" not in output.events
    assert "hot" not in task.finish().events


def test_a_window_corrected_after_it_was_judged_is_recorded_as_a_correction() -> None:
    windows = WindowStep("m", TumblingWindow(s(10)), ("device_id",), (Aggregate("mean", "value"),))
    on_means = RuleStep("hot", "m", Threshold("value_mean", (("warning", 20.0),)))
    feed = [batch(("d1", 1, 25.0), ("d1", 12, 1.0)), batch(("d1", 5, 5.0)), batch(("d1", 30, 1.0))]
    events = events_of(plan(windows, on_means, lateness=20), *feed)
    # Window [0, 10) closed at 25 (warning), then a late 5 made it 15: judged, it stays
    # firing, and the correction says the corrected window alone would be ok.
    assert events == [
        ("firing", "warning", 9, "transition"),
        ("correction", None, 9, "correction"),
        ("resolved", None, 19, "transition"),
    ]


def test_judging_final_windows_waits_out_the_lateness_and_needs_no_correction() -> None:
    windows = WindowStep("m", TumblingWindow(s(10)), ("device_id",), (Aggregate("mean", "value"),))
    on_final = RuleStep("hot", "m", Threshold("value_mean", (("warning", 20.0),)), judge="final")
    feed = [batch(("d1", 1, 25.0), ("d1", 12, 1.0)), batch(("d1", 5, 5.0)), batch(("d1", 30, 1.0))]
    assert events_of(plan(windows, on_final, lateness=20), *feed) == []  # [0, 10) was 15


def test_a_final_judgment_fires_a_held_breach_only_once_the_windows_before_it_are_final() -> None:
    windows = WindowStep("m", TumblingWindow(s(10)), ("device_id",), (Aggregate("mean", "value"),))
    warm = Threshold("value_mean", (("warning", 20.0),))
    on_final = RuleStep("hot", "m", warm, policy=AlertPolicy(hold=s(15)), judge="final")
    # [10, 20) breaches (pending at 19, due to fire at 34) and [20, 30) recovers at 29. At
    # watermark 45 the first is final but the second, final only at 50, is not: the deadline
    # at 34 must wait for it, or the alert fires and then resolves at 29, before it fired.
    rows = [("d1", 15, 25.0), ("d1", 25, 1.0), ("d1", 45, 1.0)]
    one = events_of(plan(windows, on_final, lateness=20), batch(*rows))
    many = events_of(plan(windows, on_final, lateness=20), *(batch(row) for row in rows))
    assert (
        one
        == many
        == [("pending", "warning", 19, "transition"), ("resolved", None, 29, "transition")]
    )


def test_a_rule_with_no_key_judges_the_whole_partition_together() -> None:
    fleet = RuleStep(
        "hot", "readings", Expression("value > 50", "critical"), key=(), by_input_key=False
    )
    events = events_of(plan(fleet), batch(("d1", 1, 60.0), ("d2", 2, 70.0), ("d3", 3, 1.0)))
    assert events == [("firing", "critical", 1, "transition"), ("resolved", None, 3, "transition")]


def test_the_same_input_gives_the_same_alert_ids_whatever_the_batches() -> None:
    rows = [("d1", t, 25.0 if t % 7 < 4 else 5.0) for t in range(40)]
    whole = run_task(plan(rule()), [batch(*rows)])
    pieces = run_task(
        plan(rule()), [batch(*rows[i : i + 3]) for i in range(0, 40, 3)], restart_after=5
    )

    def ids(run: object) -> list[tuple[str, str]]:
        frames = [o.events["hot"] for o in run.outputs if "hot" in o.events]  # type: ignore[attr-defined]
        return sorted(pl.concat(frames).select("transition_id", "state").rows())

    assert ids(whole) == ids(pieces)


def test_a_window_opened_by_late_readings_is_a_correction_in_any_batching() -> None:
    windows = WindowStep("m", TumblingWindow(s(10)), ("device_id",), (Aggregate("mean", "value"),))
    on_means = RuleStep("hot", "m", Threshold("value_mean", (("warning", 20.0),)))
    # [10, 20) and [20, 30) close on time; then a reading at 5 opens [0, 10) after its end.
    rows = [("d1", 11, 25.0), ("d1", 21, 25.0), ("d1", 35, 1.0), ("d1", 5, 30.0), ("d1", 50, 1.0)]
    one = events_of(plan(windows, on_means, lateness=40), batch(*rows))
    many = events_of(plan(windows, on_means, lateness=40), *(batch(row) for row in rows))
    assert (
        one
        == many
        == [
            ("correction", "warning", 9, "correction"),
            ("firing", "warning", 19, "transition"),
            ("resolved", None, 39, "transition"),
        ]
    )


def test_a_correction_is_part_of_the_open_alerts_history() -> None:
    windows = WindowStep("m", TumblingWindow(s(10)), ("device_id",), (Aggregate("mean", "value"),))
    on_means = RuleStep("hot", "m", Threshold("value_mean", (("warning", 20.0),)))
    feed = [batch(("d1", 1, 25.0), ("d1", 12, 30.0)), batch(("d1", 5, 5.0)), batch(("d1", 30, 1.0))]
    run = run_task(plan(windows, on_means, lateness=20), feed)
    frames = [o.events["hot"] for o in run.outputs if "hot" in o.events]
    table = pl.concat(frames).sort("event_time", "sequence")
    firing, correction = table.row(0, named=True), table.row(1, named=True)
    assert (firing["state"], correction["state"]) == ("firing", "correction")
    assert correction["alert_id"] == firing["alert_id"]
    assert correction["transition_id"] != firing["transition_id"]
    assert table["transition_id"].n_unique() == table.height
