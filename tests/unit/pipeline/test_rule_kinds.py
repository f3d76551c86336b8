"""The rule kinds in YAML: each declares, round-trips, says what is wrong on the rule's line;
and two pipelines shaped like the projects that asked for them (heartwatch, a district spike).
"""

from __future__ import annotations

import importlib.util
import os
from datetime import timedelta

import polars as pl
import pytest

from sensorstream import Pipeline
from sensorstream.engine.plan import EnginePlan
from sensorstream.engine.rules import (
    AllOf,
    Anomaly,
    Condition,
    Deadman,
    Ewma,
    Range,
    Rate,
    RuleStep,
    Spike,
    Unchanged,
    ZScore,
)
from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import parse_spec
from sensorstream.sources import SimulatorSourceSettings
from sensorstream.testing import readings_frame, run_task

HAS_RIVER = importlib.util.find_spec("river") is not None
RIVER = HAS_RIVER or os.environ.get("CI", "").lower() == "true"
HEAD = """\
name: kinds
source: {type: simulator, devices: 3}
readings:
  measurements: {heart_rate: float, location: string, temperature: float, rejected: float}
  tags: [district]
steps:
"""
SECOND = timedelta(seconds=1)

DECLARED: list[tuple[str, Condition]] = [
    (
        "{range: heart_rate, ranges: {u1: [60, 100], u2: [55, 95]}, severity: critical}",
        Range("heart_rate", (("u1", 60.0, 100.0), ("u2", 55.0, 95.0)), "critical"),
    ),
    ("{unchanged: location, for: 30s}", Unchanged("location", 30 * SECOND)),
    ("{rate: temperature, per: 1m, rise: 5}", Rate("temperature", 60 * SECOND, rise=5.0)),
    ("{rate: temperature, fall: 2.5}", Rate("temperature", 60 * SECOND, fall=2.5)),
    (
        "{spike: rejected, above: 0.5, times_baseline: 3, baseline: 10}",
        Spike("rejected", above=0.5, times=3.0, baseline=10),
    ),
    ("{spike: rejected, above: 40}", Spike("rejected", above=40.0)),
    (
        "{zscore: temperature, window: 30, above: 3, below: -3}",
        ZScore("temperature", 30, 3.0, -3.0),
    ),
    (
        "{ewma: temperature, alpha: 0.1, band: 3, min_observations: 10}",
        Ewma("temperature", 0.1, 3.0, 10),
    ),
    ("{deadman: 5m}", Deadman(300 * SECOND)),
    ("{deadman: 90s, clock: processing}", Deadman(90 * SECOND, "processing")),
    (
        "{all: [{range: heart_rate, ranges: {u1: [60, 100]}}, {unchanged: location, for: 30s}]}",
        AllOf((Range("heart_rate", (("u1", 60.0, 100.0),)), Unchanged("location", 30 * SECOND))),
    ),
]
if RIVER:
    DECLARED.append(
        (
            "{anomaly: [temperature, heart_rate], above: 0.8, trees: 5, height: 6, window: 100,"
            " limits: {temperature: [-20, 60], heart_rate: [30, 220]}}",
            Anomaly(
                ("temperature", "heart_rate"),
                (("temperature", -20.0, 60.0), ("heart_rate", 30.0, 220.0)),
                0.8,
                5,
                6,
                100,
            ),
        )
    )


def one_rule(rule: str, *extra: str) -> str:
    return HEAD + "  - name: r\n    rule: " + rule + "\n" + "".join(f"    {e}\n" for e in extra)


@pytest.mark.parametrize(
    ("rule", "condition"), DECLARED, ids=[c.__class__.__name__ for _, c in DECLARED]
)
def test_each_kind_declares_in_yaml_and_round_trips(rule: str, condition: Condition) -> None:
    spec = parse_spec(one_rule(rule))
    [step] = spec.to_plan().steps
    assert isinstance(step, RuleStep)
    assert step.condition == condition
    again = parse_spec(spec.to_yaml())
    assert again == spec
    assert again.to_plan().steps == (step,)


def test_the_python_builder_declares_a_kind_as_yaml_writes_it() -> None:
    built = Pipeline(
        "kinds",
        source=SimulatorSourceSettings(type="simulator", devices=3),
        measurements={"temperature": "float"},
    ).rule("r", {"zscore": "temperature", "window": 30, "above": 3}, key=["device_id"])
    yaml = one_rule("{zscore: temperature, window: 30, above: 3}", "key: [device_id]")
    assert built.spec().to_plan().steps == parse_spec(yaml).to_plan().steps


BAD: list[tuple[str, str]] = [
    ("{range: heart_rate, ranges: {u1: [100, 60]}}", "line 8, steps[0].rule: the range of 'u1'"),
    ("{range: heart_rate, ranges: {u1: [60]}}", "line 8, steps[0].rule.ranges.u1: a span is two"),
    ("{range: heart_rate, ranges: {}}", "line 8, steps[0].rule.ranges:"),
    ("{unchanged: location}", "line 8, steps[0].rule.for: Field required"),
    ("{unchanged: location, for: 0s}", "line 8, steps[0].rule: unchanged needs a positive"),
    ("{rate: temperature, per: 1m}", "line 8, steps[0].rule: a rate needs rise: D and/or fall"),
    ("{rate: temperature, rise: -1}", "line 8, steps[0].rule.rise: Input should be greater"),
    ("{spike: rejected}", "line 8, steps[0].rule: a spike needs above: X and/or times_baseline"),
    ("{spike: rejected, times_baseline: 2, baseline: 0}", "line 8, steps[0].rule.baseline:"),
    ("{zscore: temperature, above: -3}", "line 8, steps[0].rule.above: Input should be greater"),
    (
        "{zscore: temperature, above: 3, window: 4, min_observations: 5}",
        "line 8, steps[0].rule: min_observations must be between 2 and the window (4), got 5",
    ),
    ("{ewma: temperature, band: 3}", "line 8, steps[0].rule.alpha: Field required"),
    ("{ewma: temperature, alpha: 1.5, band: 3}", "line 8, steps[0].rule.alpha:"),
    ("{deadman: 0s}", "line 8, steps[0].rule: a deadman needs a positive timeout"),
    ("{deadman: 5m, clock: wall}", "line 8, steps[0].rule.clock: Input should be 'event' or"),
    (
        "{all: [{deadman: 5m}, {threshold: temperature, above: {warning: 1}}]}",
        "line 8, steps[0].rule: a deadman stands alone",
    ),
    ("{zscore: pulse, above: 3}", "line 8, steps[0].rule: its condition reads 'pulse'"),
    ("{rang: heart_rate}", "line 8, steps[0].rule: a rule names its condition by its kind: "),
]
if RIVER:
    BAD += [
        (
            "{anomaly: temperature, limits: {heart_rate: [0, 1]}}",
            "line 8, steps[0].rule: limits must give each column of the model its span",
        ),
        (
            "{anomaly: temperature, limits: {temperature: [0, 1]}, above: 2}",
            "line 8, steps[0].rule.above: Input should be less than 1",
        ),
    ]


@pytest.mark.parametrize(("rule", "message"), BAD, ids=[rule for rule, _ in BAD])
def test_a_bad_parameter_is_an_error_on_the_rules_line(rule: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_spec(one_rule(rule), origin="p.yaml").to_plan()
    assert f"p.yaml {message}" in str(raised.value)


def test_a_bad_parameter_of_a_rule_over_several_lines_names_its_own_line() -> None:
    text = HEAD + "  - name: r\n    rule:\n      zscore: temperature\n      window: 1\n"
    with pytest.raises(ConfigError, match=r"line 10, steps\[0\]\.rule\.window: Input should be"):
        parse_spec(text, origin="p.yaml")


def test_a_per_key_range_needs_one_key_column() -> None:
    text = one_rule("{range: heart_rate, ranges: {u1: [60, 100]}}", "key: []")
    with pytest.raises(ConfigError, match=r"line 9, steps\[0\]\.key: a range is looked up by one"):
        parse_spec(text, origin="p.yaml").to_plan()


# -- the shapes that asked for them -------------------------------------------------------------
HEARTWATCH = """\
name: heartwatch
source: {type: simulator, devices: 2}
readings:
  measurements: {heart_rate: float, lat: float, lon: float}
event_time: {out_of_orderness: 0s}
steps:
  - name: located
    derive: {location: "CONCAT_WS(',', lat, lon)"}
  - name: distress
    input: located
    key: [device_id]
    rule:
      all:
        - range: heart_rate
          ranges: {alice: [55, 100], bob: [45, 85]}   # each user's historical range
        - unchanged: location
          for: 30s
      severity: critical
    flapping: false
"""


def run(plan: EnginePlan, rule: str, frame: pl.DataFrame) -> list[tuple[object, ...]]:
    outputs = run_task(plan, [frame]).outputs
    events = [o.events[rule] for o in outputs if rule in o.events and o.events[rule].height]
    if not events:
        return []
    seconds = (pl.col("event_time").cast(pl.Int64) - START_US) / 1_000_000
    table = pl.concat(events).sort("key", "event_time")
    return table.select("key", "state", "severity", seconds.round(6)).rows()


START_US = 1_704_067_200_000_000  # 2024-01-01


def test_heartwatch_a_heart_rate_out_of_its_users_range_while_not_moving_for_30s_alerts() -> None:
    rows = []
    for t in range(0, 70, 10):
        # alice: too fast from the start, still until she moves at 60 s
        rows.append(("alice", t, 120.0, 52.1 if t < 60 else 52.2, 4.3))
        # bob: too fast for his range, but walking: never both
        rows.append(("bob", t + 1, 90.0, 50.0 + t / 1000, 4.0))
        # carol: not moving, and no range of hers is known
        rows.append(("carol", t + 2, 150.0, 51.0, 4.0))
    frame = readings_frame(
        [
            {"device_id": d, "ts": START_US + t * 1_000_000, "heart_rate": hr, "lat": la, "lon": lo}
            for d, t, hr, la, lo in rows
        ],
        measurements=("heart_rate", "lat", "lon"),
    )
    plan = parse_spec(HEARTWATCH).to_plan()
    assert run(plan, "distress", frame) == [
        ('{"device_id": "alice"}', "firing", "critical", 30.0),  # still since 0
        ('{"device_id": "alice"}', "resolved", None, 60.0),  # moved
    ]


DISTRICTS = """\
name: disruption
source: {type: simulator, devices: 2}
readings:
  measurements: {rejected: float}
  tags: [district]
event_time: {out_of_orderness: 0s}
steps:
  - name: per_minute
    window: {type: tumbling, size: 1m}
    key: [district]
    aggregates: [count, sum(rejected) as rejected]
  - name: shares
    input: per_minute
    derive: {rejected_share: rejected / count}
  - name: disrupted
    input: shares
    key: [district]
    rule: {spike: rejected_share, times_baseline: 3, baseline: 3, above: 0.9}
    judge: final
"""


def test_a_district_whose_rejected_share_spikes_past_3x_its_baseline_alerts_alone() -> None:
    rows = []
    for minute in range(6):
        for i in range(10):  # ten payments a minute per district, one rejected
            at = START_US + (minute * 60 + i * 5) * 1_000_000
            north_rejects = 6 if minute == 4 else 1  # a disruption in the north at minute 4
            rows.append(
                {
                    "device_id": "n",
                    "ts": at,
                    "district": "north",
                    "rejected": float(i < north_rejects),
                }
            )
            rows.append(
                {"device_id": "s", "ts": at + 1, "district": "south", "rejected": float(i < 1)}
            )
    frame = readings_frame(rows, measurements=("rejected",), tags=("district",))  # type: ignore[arg-type]
    plan = parse_spec(DISTRICTS).to_plan()
    assert run(plan, "disrupted", frame) == [
        ('{"district": "north"}', "firing", "warning", 299.999999),  # 0.6 > 3 x 0.1
        ('{"district": "north"}', "resolved", None, 359.999999),
    ]
