"""One partition's processing: deduplicate, track the watermark, run the window steps.

Each input partition has its own task with its own state, so a partition's state (with
its source position, kept by the runtime) can be checkpointed, restored, or moved to
another worker as a unit. Every reading that enters is classified exactly once:
``duplicate``, ``late`` (too late for every window step) or ``accepted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import polars as pl

from sensorstream.engine.dedup import Deduplicator
from sensorstream.engine.operator import WATERMARK, OperatorState
from sensorstream.engine.watermarks import WatermarkTracker
from sensorstream.engine.windows import WindowOperator, WindowStep
from sensorstream.engine.windows.base import micros
from sensorstream.errors import ConfigError
from sensorstream.readings import DEVICE, MESSAGE_ID, TS


@dataclass(frozen=True)
class EventTime:
    """How event time is judged: disorder tolerated, lateness accepted, idleness allowed."""

    out_of_orderness: timedelta = timedelta(seconds=5)
    allowed_lateness: timedelta = timedelta(0)
    idle_timeout: timedelta | None = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.out_of_orderness < timedelta(0) or self.allowed_lateness < timedelta(0):
            msg = "out_of_orderness and allowed_lateness must not be negative"
            raise ConfigError(msg)


@dataclass(frozen=True)
class Dedup:
    """Which repeats to drop: ``exact`` (same device, time and values) or ``message_id``."""

    enabled: bool = True
    by: str = "exact"
    horizon: timedelta | None = None  # default: out_of_orderness + lateness + longest window


@dataclass(frozen=True)
class EnginePlan:
    """Everything the engine needs to know about a pipeline, free of any I/O."""

    measurements: tuple[str, ...]
    steps: tuple[WindowStep, ...] = ()
    event_time: EventTime = EventTime()
    dedup: Dedup = Dedup()

    def dedup_horizon(self) -> timedelta:
        """How far back repeats are recognised."""
        if self.dedup.horizon is not None:
            return self.dedup.horizon
        spans = [_span(step.window) for step in self.steps] or [timedelta(0)]
        return self.event_time.out_of_orderness + self.event_time.allowed_lateness + max(spans)


def _span(window: object) -> timedelta:
    for attribute in ("size", "gap"):
        value = getattr(window, attribute, None)
        if isinstance(value, timedelta):
            return value
    msg = f"unknown window declaration {window!r}"
    raise ConfigError(msg)


@dataclass
class TaskOutput:
    """What one batch (or one watermark move) produced."""

    accepted: pl.DataFrame | None = None
    duplicates: int = 0
    late: pl.DataFrame | None = None  # late readings, with the steps they were too late for
    late_count: int = 0  # readings too late for every step (not accepted)
    late_by_step: dict[str, int] = field(default_factory=dict)  # too late for each step
    results: dict[str, pl.DataFrame] = field(default_factory=dict)


class PartitionTask:
    """Runs the plan over one partition's readings, batch after batch."""

    def __init__(self, plan: EnginePlan) -> None:
        self.plan = plan
        policy = plan.event_time
        idle = micros(policy.idle_timeout) if policy.idle_timeout is not None else None
        self.watermarks = WatermarkTracker(micros(policy.out_of_orderness), idle)
        self.dedup: Deduplicator | None = None
        if plan.dedup.enabled:
            keys: Sequence[str] = (
                [MESSAGE_ID] if plan.dedup.by == "message_id" else [DEVICE, TS, *plan.measurements]
            )
            self.dedup = Deduplicator(keys, micros(plan.dedup_horizon()))
        self.operators: list[WindowOperator] = [
            step.window.build(step, policy.allowed_lateness) for step in plan.steps
        ]

    @property
    def watermark(self) -> int:
        """The partition's watermark in microseconds."""
        return self.watermarks.watermark

    def process(self, readings: pl.DataFrame, now_us: int) -> TaskOutput:
        """Classify and fold one batch of valid readings (in arrival order)."""
        annotated = self.watermarks.annotate(readings, now_us)
        watermark = self.watermarks.watermark
        duplicates = 0
        if self.dedup is not None:
            duplicate = self.dedup.split(annotated)
            duplicates = int(duplicate.sum())
            if duplicates:
                annotated = annotated.filter(~duplicate)
            self.dedup.evict(watermark)
        output = TaskOutput(duplicates=duplicates)
        late_for: list[pl.Series] = []
        for operator in self.operators:
            result = operator.process(annotated, watermark)
            if result.results is not None and result.results.height:
                output.results[operator.name] = result.results
            if result.late is not None:
                late_for.append(result.late.alias(operator.name))
        clean = annotated.drop(WATERMARK)
        if late_for and any(mask.any() for mask in late_for):
            flags = pl.DataFrame(late_for)
            all_late = flags.select(pl.all_horizontal(pl.all())).to_series()
            any_late = flags.select(pl.any_horizontal(pl.all())).to_series()
            names = [mask.name for mask in late_for]
            steps = flags.select(
                pl.concat_list([pl.when(pl.col(n)).then(pl.lit(n)).otherwise(None) for n in names])
                .list.drop_nulls()
                .list.join(",")
                .alias("late_for")
            ).to_series()
            output.late = clean.with_columns(steps).filter(any_late)
            output.late_count = int(all_late.sum())
            output.late_by_step = {mask.name: int(mask.sum()) for mask in late_for if mask.any()}
            output.accepted = clean.filter(~all_late)
        else:
            output.accepted = clean
        return output

    def tick(self, now_us: int) -> TaskOutput:
        """Let processing time advance an idle partition's watermark."""
        if not self.watermarks.tick(now_us):
            return TaskOutput()
        return self._on_watermark()

    def finish(self) -> TaskOutput:
        """End of input: close every window."""
        self.watermarks.close()
        return self._on_watermark()

    def _on_watermark(self) -> TaskOutput:
        output = TaskOutput()
        for operator in self.operators:
            result = operator.on_watermark(self.watermarks.watermark)
            if result.results is not None and result.results.height:
                output.results[operator.name] = result.results
        if self.dedup is not None:
            self.dedup.evict(self.watermarks.watermark)
        return output

    def snapshot(self) -> OperatorState:
        """The whole partition state as frames and JSON metadata."""
        state = OperatorState(meta={"watermarks": self.watermarks.snapshot()})
        if self.dedup is not None:
            state.frames["dedup"] = self.dedup.snapshot()
        for operator in self.operators:
            for name, frame in operator.snapshot().frames.items():
                state.frames[f"{operator.name}/{name}"] = frame
        return state

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.watermarks.restore(state.meta["watermarks"])
        if self.dedup is not None and "dedup" in state.frames:
            self.dedup.restore(state.frames["dedup"])
        for operator in self.operators:
            prefix = f"{operator.name}/"
            frames = {
                key[len(prefix) :]: frame
                for key, frame in state.frames.items()
                if key.startswith(prefix)
            }
            operator.restore(OperatorState(frames=frames))
