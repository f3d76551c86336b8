"""The contract every window type joins by being part of the ``Window`` union.

For each declaration type, on random out-of-order streams (with duplicates, late readings
and null measurements), under a random key, emission mode and event-time policy:

- cutting the stream into other batches changes no result;
- restoring from a checkpoint at any point gives the same output as no interruption, to
  the bit, and the state survives the checkpoint's Arrow IPC files unchanged (idleness is
  left out: a restart restarts the silence on purpose, see docs/architecture.md);
- the input batches are never mutated;
- the declaration, as a step of a pipeline, round-trips through the YAML spec.

Whether the results are *right* is ``tests/property``'s business (against a per-event
reference); here the engine is only compared with itself. A new window type joins by being
added to the union, and fails until it has a sample declaration in :data:`SAMPLES`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import get_args

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sensorstream.engine.operator import OperatorState
from sensorstream.engine.task import EnginePlan, EventTime, PartitionTask, TaskOutput
from sensorstream.engine.windows import (
    HoppingWindow,
    SessionWindow,
    TumblingWindow,
    Window,
    WindowStep,
)
from sensorstream.engine.windows.base import EmitMode
from sensorstream.pipeline.builder import Pipeline
from sensorstream.pipeline.spec import PipelineSpec, parse_aggregate
from sensorstream.runtime.checkpoints import CheckpointStore, PartitionCheckpoint
from sensorstream.sources import SimulatorSourceSettings
from sensorstream.testing import (
    ReadingValue,
    Tick,
    batch_sizes,
    reading_streams,
    readings_frame,
    run_task,
    split,
)

SECOND = timedelta(seconds=1)
MEASUREMENTS = ("temperature", "humidity")
TAGS = ("site",)
# Order-sensitive (first, last), float-sensitive (mean, stddev) and sketched (p90) aggregates:
# the ones a careless split, restore or merge would change.
AGGREGATE_TEXTS = (
    "count",
    "count(humidity)",
    "mean(temperature)",
    "first(temperature)",
    "last(humidity)",
    "max(temperature) as peak",
    "stddev(humidity)",
    "p90(temperature)",
)
AGGREGATES = tuple(parse_aggregate(text) for text in AGGREGATE_TEXTS)
KEYS: tuple[tuple[str, ...], ...] = (("device_id",), (), ("site",), ("device_id", "site"))
EMIT_MODES: tuple[EmitMode, ...] = ("on_close", "updates")
DURATIONS = (timedelta(0), SECOND / 2, 2 * SECOND)

WINDOW_TYPES: tuple[type[Window], ...] = get_args(Window)
SAMPLES: dict[type[Window], Window] = {
    TumblingWindow: TumblingWindow(size=2 * SECOND, offset=SECOND / 4),
    HoppingWindow: HoppingWindow(size=3 * SECOND, slide=SECOND, offset=SECOND / 2),
    SessionWindow: SessionWindow(gap=1.5 * SECOND),
}
"""One declaration per window type, sized so that a generated stream spans many windows."""


def sample_of(window_type: type[Window]) -> Window:
    """The sample declaration of a window type; the test fails if it has none."""
    if window_type not in SAMPLES:
        pytest.fail(
            f"{window_type.__name__} is part of the Window union but has no sample declaration: "
            f"add one to SAMPLES in {Path(__file__).name} so it joins the window contract"
        )
    return SAMPLES[window_type]


by_name = pytest.mark.parametrize("window_type", WINDOW_TYPES, ids=lambda t: t.__name__)
# An example runs the engine two or three times (about a tenth of a second): a quarter of the
# profile's examples per window type keeps the suite within its time budget.
examples = settings(max_examples=max(10, settings().max_examples // 4))

Rows = list[dict[str, ReadingValue]]
Feed = list[pl.DataFrame | Tick]


@st.composite
def plans(draw: st.DrawFn, window: Window, *, idle: bool) -> EnginePlan:
    """One step of ``window`` under a random key, emission mode and event-time policy."""
    step = WindowStep(
        "contract",
        window,
        draw(st.sampled_from(KEYS), label="key"),
        AGGREGATES,
        draw(st.sampled_from(EMIT_MODES), label="emit"),
    )
    idle_timeouts: list[timedelta | None] = [None, 2 * SECOND] if idle else [None]
    event_time = EventTime(
        out_of_orderness=draw(st.sampled_from(DURATIONS), label="out_of_orderness"),
        allowed_lateness=draw(st.sampled_from(DURATIONS), label="allowed_lateness"),
        idle_timeout=draw(st.sampled_from(idle_timeouts), label="idle_timeout"),
    )
    return EnginePlan(MEASUREMENTS, (step,), event_time)


def streams() -> st.SearchStrategy[Rows]:
    return reading_streams(measurements=MEASUREMENTS, max_readings=24)


def frames_of(pieces: Sequence[Sequence[dict[str, ReadingValue]]]) -> list[pl.DataFrame]:
    return [readings_frame(rows, measurements=MEASUREMENTS, tags=TAGS) for rows in pieces]


@st.composite
def feeds(draw: st.DrawFn) -> Feed:
    """A stream cut into batches, with processing-clock ticks (idleness) between some."""
    rows = draw(streams(), label="stream")
    batches = frames_of(split(rows, draw(batch_sizes(len(rows), max_batches=5), label="sizes")))
    feed: Feed = []
    now_us = 0
    for batch in batches:
        if draw(st.booleans(), label="tick first"):
            now_us += draw(st.integers(0, 6), label="idle seconds") * 1_000_000
            feed.append(Tick(now_us))
        feed.append(batch)
    return feed


def assert_close_results(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Equal final results, floats within 1e-9: other batches may add a sum up in another order."""
    assert_frame_equal(actual, expected, rel_tol=1e-9, abs_tol=1e-9)


def assert_identical(actual: pl.DataFrame, expected: pl.DataFrame, what: str) -> None:
    """Equal frames to the bit; the message says which frame differs."""
    try:
        assert_frame_equal(actual, expected, check_exact=True)
    except AssertionError as error:
        raise AssertionError(f"{what}: {error}") from None


def in_identity_order(results: pl.DataFrame, step: WindowStep, where: str) -> pl.DataFrame:
    """One batch of a step's results sorted by window identity (key and ``window_start``).

    A sink applies a batch's rows by identity, so their order carries no meaning as long as
    no identity comes twice in one batch; that is checked here too.
    """
    identity = [*step.key, "window_start"]
    repeated = results.filter(results.select(identity).is_duplicated())
    assert repeated.height == 0, f"{where}: a window comes twice in one batch:\n{repeated}"
    return results.sort(identity, nulls_last=True)


def assert_same_output(
    actual: TaskOutput, expected: TaskOutput, plan: EnginePlan, where: str
) -> None:
    """The same results (to the bit, in any row order), accepted and late readings, counts."""
    assert (actual.duplicates, actual.late_count) == (expected.duplicates, expected.late_count), (
        where
    )
    assert actual.results.keys() == expected.results.keys(), where
    for step in plan.windows:
        if step.name in expected.results:
            assert_identical(
                in_identity_order(actual.results[step.name], step, where),
                in_identity_order(expected.results[step.name], step, where),
                f"{where}: results of {step.name}",
            )
    for name, got, want in (
        ("accepted", actual.accepted, expected.accepted),
        ("late", actual.late, expected.late),
    ):
        assert (got is None) == (want is None), f"{where}: {name}"
        if got is not None and want is not None:
            assert_identical(got, want, f"{where}: {name} readings")


def feed_into(task: PartitionTask, batches: Sequence[pl.DataFrame]) -> list[TaskOutput]:
    """Each batch's output, all at one processing time (idleness plays no part here)."""
    return [task.process(batch, now_us=0) for batch in batches]


def through_a_checkpoint(state: OperatorState) -> OperatorState:
    """The state as a restart reads it back: saved and loaded by the checkpoint store."""
    with tempfile.TemporaryDirectory() as folder:
        store = CheckpointStore(Path(folder))
        store.save_partition("contract", PartitionCheckpoint(0, {"readings": 0}, {}, state))
        loaded = store.load_partition("contract", 0)
    assert loaded is not None
    return loaded.state


# -- the contract -------------------------------------------------------------------------


@by_name
@examples
@given(data=st.data())
def test_cutting_the_stream_into_other_batches_changes_no_result(
    window_type: type[Window], data: st.DataObject
) -> None:
    plan = data.draw(plans(sample_of(window_type), idle=False), label="plan")
    rows = data.draw(streams(), label="stream")
    one_way = split(rows, data.draw(batch_sizes(len(rows), max_batches=5), label="sizes"))
    other_way = split(rows, data.draw(batch_sizes(len(rows), max_batches=5), label="other sizes"))

    run = run_task(plan, frames_of(one_way))
    other = run_task(plan, frames_of(other_way))

    assert (other.duplicates, other.late_count) == (run.duplicates, run.late_count)
    for step in plan.windows:
        assert_close_results(other.results()[step.name], run.results()[step.name])


@by_name
@examples
@given(data=st.data())
def test_restoring_mid_stream_changes_no_output(
    window_type: type[Window], data: st.DataObject
) -> None:
    plan = data.draw(plans(sample_of(window_type), idle=False), label="plan")
    rows = data.draw(streams(), label="stream")
    batches = frames_of(
        split(rows, data.draw(batch_sizes(len(rows), max_batches=5), label="sizes"))
    )
    restart_after = data.draw(st.integers(0, len(batches)), label="restart after")
    done, rest = batches[:restart_after], batches[restart_after:]

    uninterrupted = PartitionTask(plan)
    feed_into(uninterrupted, done)
    snapshot = uninterrupted.snapshot()
    saved = through_a_checkpoint(snapshot)
    expected = [*feed_into(uninterrupted, rest), uninterrupted.finish()]

    # The checkpoint kept every state frame as it was, and the task going on did not change
    # the snapshot it had handed out.
    assert saved.meta == snapshot.meta
    assert saved.frames.keys() == snapshot.frames.keys()
    for name, frame in snapshot.frames.items():
        assert_identical(saved.frames[name], frame, f"state frame {name!r}")
    restored = PartitionTask(plan)
    restored.restore(saved)
    outputs = [*feed_into(restored, rest), restored.finish()]

    for index, (got, want) in enumerate(zip(outputs, expected, strict=True)):
        where = f"batch {restart_after + index}" if index < len(rest) else "the finish"
        assert_same_output(
            got, want, plan, f"{where}, after a restart before batch {restart_after}"
        )
    assert restored.watermark == uninterrupted.watermark


@by_name
@examples
@given(data=st.data())
def test_the_input_batches_are_not_mutated(window_type: type[Window], data: st.DataObject) -> None:
    plan = data.draw(plans(sample_of(window_type), idle=True), label="plan")
    feed = data.draw(feeds(), label="feed")
    restart_after = data.draw(st.none() | st.integers(0, len(feed)), label="restart after")
    copies = [item if isinstance(item, Tick) else item.clone() for item in feed]

    run_task(plan, feed, restart_after=restart_after)

    for index, (after, before) in enumerate(zip(feed, copies, strict=True)):
        if isinstance(before, pl.DataFrame):
            assert isinstance(after, pl.DataFrame)
            assert after.schema == before.schema, f"batch {index} changed its schema"
            assert_identical(after, before, f"batch {index}")


@by_name
@pytest.mark.parametrize("emit", EMIT_MODES)
def test_the_declaration_round_trips_through_the_pipeline_yaml(
    window_type: type[Window],
    emit: EmitMode,
    spec_round_trip: Callable[[PipelineSpec], PipelineSpec],
) -> None:
    window = sample_of(window_type)
    event_time = EventTime(out_of_orderness=SECOND / 4, allowed_lateness=3 * SECOND)
    step = WindowStep("contract", window, ("device_id", "site"), AGGREGATES, emit)
    pipeline = (
        Pipeline(
            "contract",
            source=SimulatorSourceSettings(),
            measurements=dict.fromkeys(MEASUREMENTS, "float"),
        )
        .readings(tags=list(TAGS))
        .event_time(
            out_of_orderness=event_time.out_of_orderness,
            allowed_lateness=event_time.allowed_lateness,
            idle_timeout=event_time.idle_timeout,
        )
        .window(step.name, step.window, AGGREGATE_TEXTS, key=step.key, emit=step.emit)
    )
    spec = pipeline.spec()

    loaded = spec_round_trip(spec)

    assert loaded == spec
    assert loaded.to_plan() == EnginePlan(MEASUREMENTS, (step,), event_time)
    assert loaded.to_plan().windows[0].window == window
