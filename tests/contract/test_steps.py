"""The contract every step kind joins by being registered in ``STEP_KINDS``.

For each kind, a small graph that uses it (over readings, and over another step's results
where it can read them), on random out-of-order streams:

- cutting the stream into other batches changes no final result and no alert;
- a snapshot and restore at any point (through Arrow IPC and JSON, as a checkpoint does)
  gives exactly the output of no interruption;
- the input batches are never mutated;
- the pipeline declaring it round-trips through YAML.

A new kind fails here until it has samples in :data:`SAMPLES`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.joins.tables import TableJoinStep, TableStep
from sensorstream.engine.outputs import OutputKind
from sensorstream.engine.plan import STEP_KINDS, Dedup, EnginePlan, EventTime
from sensorstream.engine.rules import (
    CONDITIONS,
    AlertPolicy,
    AllOf,
    Anomaly,
    Condition,
    Deadman,
    Ewma,
    Expression,
    Range,
    Rate,
    RuleStep,
    Spike,
    Threshold,
    Unchanged,
    ZScore,
)
from sensorstream.engine.steps import Step
from sensorstream.engine.windows import HoppingWindow, TumblingWindow, WindowStep
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.testing import (
    ReadingValue,
    TaskRun,
    apply_changes,
    batch_sizes,
    reading_streams,
    readings_frame,
    run_task,
    split,
)
from tests.contract.join_samples import JOIN_SAMPLES, join_yaml

SECOND = timedelta(seconds=1)
MEASUREMENTS = ("temperature", "humidity")
MINUTE = WindowStep(
    "minute",
    TumblingWindow(2 * SECOND),
    ("device_id",),
    (Aggregate("count"), Aggregate("mean", "temperature"), Aggregate("max", "humidity")),
)

# Graphs using each kind; the kind's own steps read readings and, where they can, results.
SAMPLES: dict[str, list[tuple[Step, ...]]] = {
    "window": [
        (MINUTE,),
        (
            MINUTE,
            WindowStep(
                "rollup",
                HoppingWindow(6 * SECOND, 2 * SECOND),
                ("device_id",),
                (Aggregate("sum", "count"), Aggregate("max", "temperature_mean")),
                input="minute",
            ),
        ),
    ],
    "derive": [
        (
            DeriveStep(
                "f", "readings", columns=(("f", "temperature * 1.8 + 32"),), where="humidity > 0"
            ),
            WindowStep(
                "wf",
                TumblingWindow(2 * SECOND),
                ("device_id",),
                (Aggregate("max", "f"),),
                input="f",
            ),
        ),
        (MINUTE, DeriveStep("busy", "minute", where="count >= 2")),
    ],
    "rule": [
        (
            RuleStep(
                "warm",
                "readings",
                Threshold("temperature", (("notice", 1.0), ("warning", 2.0)), clear=0.25),
                policy=AlertPolicy(consecutive=2),
            ),
        ),
        (
            MINUTE,
            RuleStep(
                "hot_minutes",
                "minute",
                Expression("temperature_mean > 1.5 AND count > 1", "critical"),
                policy=AlertPolicy(hold=2 * SECOND),
            ),
        ),
        (
            MINUTE,
            RuleStep(
                "hot_final_minutes",
                "minute",
                Threshold("temperature_mean", (("warning", 1.0), ("critical", 2.0))),
                policy=AlertPolicy(consecutive=2),
                judge="final",
            ),
        ),
    ],
}
# A table kept from a stream, and readings enriched from it as of their own time (a latest
# lookup of a table fed by the same stream depends, by definition, on arrival order).
LAST_HUMIDITY = DeriveStep("h", "readings", columns=(("h", "humidity"),))
ENRICHED_WINDOW = WindowStep(
    "wh", TumblingWindow(2 * SECOND), ("device_id",), (Aggregate("max", "h"),), input="with_h"
)
SAMPLES["table"] = [
    (
        LAST_HUMIDITY,
        TableStep("last_h", "h", columns=("h",), delete_when="humidity < 0"),
        TableJoinStep("with_h", "readings", table="last_h", mode="as_of"),
        ENRICHED_WINDOW,
    ),
]
SAMPLES["table_join"] = [
    (
        LAST_HUMIDITY,
        TableStep("last_h", "h", columns=("h",)),
        TableJoinStep("with_h", "readings", table="last_h", mode="as_of", missing="dead_letter"),
        ENRICHED_WINDOW,
    ),
]
SAMPLES |= JOIN_SAMPLES
# Besides threshold and when: a rule of each condition kind (``CONDITIONS``).
BANDS = DeriveStep("bands", "readings", columns=(("band", "temperature > 0"),))
HAS_RIVER = importlib.util.find_spec("river") is not None


def _rule(name: str, condition: Condition, *, over: str = "readings", **options: object) -> Step:
    return RuleStep(name, over, condition, **options)  # type: ignore[arg-type]


SAMPLES["rule"] += [
    (_rule("ranged", Range("temperature", (("d1", -50.0, 50.0), ("d2", 0.0, 80.0)))),),
    (
        BANDS,
        _rule(
            "still",
            AllOf(
                (Range("temperature", (("d1", -60.0, 60.0),)), Unchanged("band", 3 * SECOND)),
                "critical",
            ),
            over="bands",
            key=("device_id",),
            by_input_key=False,
        ),
    ),
    (_rule("rising", Rate("temperature", SECOND, rise=40.0, fall=60.0)),),
    (_rule("jump", Spike("humidity", above=60.0)),),
    (MINUTE, _rule("surge", Spike("count", times=1.5, baseline=2), over="minute")),
    (
        MINUTE,
        _rule("surge_final", Spike("count", above=2.0, times=2.0), over="minute", judge="final"),
    ),
    (_rule("odd", ZScore("temperature", window=4, above=1.0, below=-1.0, min_observations=3)),),
    (_rule("off_band", Ewma("humidity", alpha=0.3, band=1.0, min_observations=3)),),
    (_rule("quiet", Deadman(3 * SECOND), policy=AlertPolicy(hold=SECOND)),),
    (_rule("nothing", Deadman(4 * SECOND), key=(), by_input_key=False),),
    (_rule("unheard", Deadman(3 * SECOND, clock="processing")),),
]
if HAS_RIVER:
    SAMPLES["rule"].append(
        (
            _rule(
                "strange",
                Anomaly(
                    ("temperature", "humidity"),
                    (("temperature", -100.0, 100.0), ("humidity", -100.0, 100.0)),
                    above=0.6,
                    trees=3,
                    height=3,
                    window=4,
                ),
            ),
        )
    )
Rows = list[dict[str, ReadingValue]]


def test_every_registered_step_kind_has_samples() -> None:
    assert set(SAMPLES) == set(STEP_KINDS)


def test_every_condition_kind_has_a_rule_sample() -> None:
    def kinds(condition: Condition) -> set[type[Condition]]:
        inner = condition.conditions if isinstance(condition, AllOf) else ()
        return {type(condition)}.union(*(kinds(c) for c in inner))

    used = set().union(
        *(
            kinds(step.condition)
            for steps in SAMPLES["rule"]
            for step in steps
            if isinstance(step, RuleStep)
        )
    )
    expected = set(CONDITIONS.values())
    if not HAS_RIVER and os.environ.get("CI", "").lower() != "true":
        expected.discard(Anomaly)  # River is not installed here: CI has it
    assert expected <= used


def plan_of(steps: tuple[Step, ...], lateness: timedelta) -> EnginePlan:
    event_time = EventTime(out_of_orderness=SECOND, allowed_lateness=lateness, idle_timeout=None)
    return EnginePlan(MEASUREMENTS, steps, event_time, Dedup(enabled=False))


def frames_of(rows: Rows, sizes: list[int]) -> list[pl.DataFrame]:
    return [readings_frame(piece, measurements=MEASUREMENTS) for piece in split(rows, sizes)]


def finals(run: TaskRun, plan: EnginePlan) -> dict[str, pl.DataFrame]:
    """Every results step's final rows, and every rule's transitions, in a fixed order."""
    out: dict[str, pl.DataFrame] = {}
    for name, shape in plan.graph.outputs.items():
        changes = [o.results[name] for o in run.outputs if name in o.results]
        if changes:
            out[name] = apply_changes(changes, shape.key)
        events = [o.events[name] for o in run.outputs if name in o.events]
        if events:
            out[name] = pl.concat(events).sort("transition_id")
    return out


def assert_same(
    actual: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame], exact: bool
) -> None:
    assert actual.keys() == expected.keys()
    for name, frame in expected.items():
        if exact:
            assert_frame_equal(actual[name], frame, check_exact=True)
        else:  # another batching may add a float sum up in another order
            assert_frame_equal(actual[name], frame, rel_tol=1e-9, abs_tol=1e-9)


cases = [(kind, index) for kind in sorted(SAMPLES) for index in range(len(SAMPLES[kind]))]


def early_judges(plan: EnginePlan) -> list[str]:
    """Rules that judge window results on close, in a plan with an allowed lateness.

    Such a rule judges a window's first result, and a reading within the allowed lateness
    that arrives in the same batch as the window's close is in that result, while in a
    later batch it makes a correction: the alerts depend on the batching (a file replay's
    batching is fixed, so a restart still changes nothing). ``judge: final`` does not.
    """
    outputs = plan.graph.outputs
    return [
        step.name
        for step in plan.steps
        if isinstance(step, RuleStep)
        and step.judge == "on_close"
        and outputs[step.input].kind is OutputKind.RESULTS
    ]


@pytest.mark.parametrize(("kind", "index"), cases)
@settings(max_examples=40)
@given(
    rows=reading_streams(measurements=MEASUREMENTS, max_readings=24),
    lateness=st.sampled_from([timedelta(0), 3 * SECOND]),
    data=st.data(),
)
def test_other_batches_and_a_restore_change_nothing(
    kind: str, index: int, rows: Rows, lateness: timedelta, data: st.DataObject
) -> None:
    plan = plan_of(SAMPLES[kind][index], lateness)
    one = frames_of(rows, [len(rows)])
    many = frames_of(rows, data.draw(batch_sizes(len(rows), max_batches=5)))
    copies = [frame.clone() for frame in many]
    reference = finals(run_task(plan, one), plan)
    batched = finals(run_task(plan, many), plan)
    if lateness:  # a rule judging results on close sees what the batching put in them
        for name in early_judges(plan):
            reference.pop(name, None)
            batched.pop(name, None)
    assert_same(batched, reference, exact=False)
    for frame, copy in zip(many, copies, strict=True):
        assert_frame_equal(frame, copy)  # the input is never mutated
    restart = data.draw(st.integers(0, len(many)))
    uninterrupted = finals(run_task(plan, many), plan)
    assert_same(
        finals(run_task(plan, many, restart_after=restart), plan), uninterrupted, exact=True
    )


@pytest.mark.parametrize(("kind", "index"), cases)
def test_the_declaration_round_trips_through_yaml(
    kind: str, index: int, spec_round_trip: Callable[[PipelineSpec], PipelineSpec]
) -> None:
    steps = SAMPLES[kind][index]
    spec = PipelineSpec.model_validate(
        {
            "name": "contract",
            "source": {"type": "simulator"},
            "readings": {"measurements": dict.fromkeys(MEASUREMENTS, "float")},
            "steps": [_as_yaml(step) for step in steps],
        }
    )
    loaded = spec_round_trip(spec)
    assert loaded == spec
    assert loaded.to_plan().steps == steps


def _as_yaml(step: Step) -> dict[str, object]:
    """A step declaration as its YAML mapping (the pipeline builder's way, by hand)."""
    if (joined := join_yaml(step)) is not None:
        return joined
    if isinstance(step, WindowStep):
        window = step.window
        shape: dict[str, object] = (
            {"type": "tumbling", "size": window.size}
            if isinstance(window, TumblingWindow)
            else {"type": "hopping", "size": window.size, "slide": window.slide}  # type: ignore[union-attr]
        )
        return {
            "name": step.name,
            "input": step.input,
            "window": shape,
            "key": list(step.key),
            "aggregates": [a.text for a in step.aggregates],
        }
    if isinstance(step, DeriveStep):
        return {
            "name": step.name,
            "input": step.input,
            "derive": dict(step.columns),
            "where": step.where,
        }
    if isinstance(step, TableStep):
        return {
            "name": step.name,
            "input": step.input,
            "table": {
                "key": list(step.key),
                "delete_when": step.delete_when,
                "columns": list(step.columns),
            },
        }
    if isinstance(step, TableJoinStep):
        return {
            "name": step.name,
            "input": step.input,
            "join": {
                "table": step.table,
                "on": list(step.on),
                "mode": step.mode,
                "columns": list(step.columns),
                "missing": step.missing,
            },
        }
    assert isinstance(step, RuleStep)
    declared: dict[str, object] = {
        "name": step.name,
        "input": step.input,
        "rule": _condition_yaml(step.condition),
        "consecutive": step.policy.consecutive,
        "for": step.policy.hold,
        "judge": step.judge,
    }
    if not step.by_input_key:
        declared["key"] = list(step.key)
    return declared


def _condition_yaml(condition: Condition) -> dict[str, object]:
    """A condition as its YAML mapping, by hand."""
    severity = {"severity": getattr(condition, "severity", "warning")}
    if isinstance(condition, Threshold):
        return {
            "threshold": condition.column,
            "above": dict(condition.bounds),
            "clear": condition.clear,
        }
    if isinstance(condition, Expression):
        return {"when": condition.when, **severity}
    if isinstance(condition, AllOf):
        return {"all": [_condition_yaml(c) for c in condition.conditions], **severity}
    if isinstance(condition, Range):
        return {
            "range": condition.column,
            "ranges": {k: [lo, hi] for k, lo, hi in condition.ranges},
            **severity,
        }
    if isinstance(condition, Unchanged):
        return {"unchanged": condition.column, "for": condition.hold, **severity}
    if isinstance(condition, Rate):
        return {
            "rate": condition.column,
            "per": condition.per,
            "rise": condition.rise,
            "fall": condition.fall,
            **severity,
        }
    if isinstance(condition, Spike):
        return {
            "spike": condition.column,
            "above": condition.above,
            "times_baseline": condition.times,
            "baseline": condition.baseline,
            **severity,
        }
    if isinstance(condition, ZScore):
        return {
            "zscore": condition.column,
            "window": condition.window,
            "above": condition.above,
            "below": condition.below,
            "min_observations": condition.min_observations,
            **severity,
        }
    if isinstance(condition, Ewma):
        return {
            "ewma": condition.column,
            "alpha": condition.alpha,
            "band": condition.band,
            "min_observations": condition.min_observations,
            **severity,
        }
    if isinstance(condition, Anomaly):
        return {
            "anomaly": list(condition.columns),
            "limits": {c: [lo, hi] for c, lo, hi in condition.limits},
            "above": condition.above,
            "trees": condition.trees,
            "height": condition.height,
            "window": condition.window,
            "seed": condition.seed,
            **severity,
        }
    assert isinstance(condition, Deadman)
    return {"deadman": condition.timeout, "clock": condition.clock, **severity}
