"""One partition's processing: deduplicate, track the watermark, run the step graph.

Each input partition has its own task with its own state, so a partition's state (with
its source position, kept by the runtime) can be checkpointed, restored, or moved to
another worker as a unit. Every reading that enters is classified exactly once:
``duplicate``, ``late`` (too late for every time-sensitive step that reads readings) or
``accepted``.

Steps run in the graph's order, each on what its input emitted in the same round (a
source batch, a watermark move, a tick). What a step emits reaches the steps reading it
before the watermark moves on for them: a window result closed by this batch carries the
watermark that held before the batch, so an hourly roll-up still takes the last minute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from sensorstream.engine.dedup import Deduplicator
from sensorstream.engine.operator import Operator, OperatorState
from sensorstream.engine.outputs import END, OPENED_LATE, ROW, WATERMARK, OutputKind
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime
from sensorstream.engine.steps import READINGS, Step
from sensorstream.engine.time import micros
from sensorstream.engine.watermarks import WatermarkTracker
from sensorstream.readings import DEVICE, MESSAGE_ID, TS, TS_TYPE

__all__ = ["Dedup", "EnginePlan", "EventTime", "PartitionTask", "TaskOutput"]


@dataclass
class TaskOutput:
    """What one batch (or one watermark move, or one tick) produced."""

    accepted: pl.DataFrame | None = None
    duplicates: int = 0
    late: pl.DataFrame | None = None  # late readings, with the steps they were too late for
    late_count: int = 0  # readings too late for every step (not accepted)
    late_by_step: dict[str, int] = field(default_factory=dict)  # rows too late for each step
    results: dict[str, pl.DataFrame] = field(default_factory=dict)  # results steps' upserts
    events: dict[str, pl.DataFrame] = field(default_factory=dict)  # rule steps' events


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
        graph = plan.graph
        self.order: tuple[Step, ...] = graph.order
        self.kinds = {name: shape.kind for name, shape in graph.outputs.items()}
        self.operators: dict[str, Operator] = {
            step.name: step.build(graph.inputs[step.name], policy) for step in graph.order
        }
        # Steps whose input rows are readings (directly or through derive steps): the ones
        # whose lateness classifies readings.
        self.reading_steps = self._fed_by_readings()

    def _fed_by_readings(self) -> set[str]:
        fed = {READINGS}
        for step in self.order:
            if step.input in fed and self.kinds[step.input] is OutputKind.STREAM:
                fed.add(step.name)
        return fed - {READINGS}

    @property
    def watermark(self) -> int:
        """The partition's watermark in microseconds."""
        return self.watermarks.watermark

    def process(self, readings: pl.DataFrame, now_us: int) -> TaskOutput:
        """Classify and fold one batch of valid readings (in arrival order)."""
        before = self.watermarks.watermark
        annotated = self.watermarks.annotate(readings, now_us)
        watermark = self.watermarks.watermark
        duplicates = 0
        if self.dedup is not None:
            duplicate = self.dedup.split(annotated)
            duplicates = int(duplicate.sum())
            if duplicates:
                annotated = annotated.filter(~duplicate)
            self.dedup.evict(watermark)
        annotated = annotated.with_row_index(ROW)
        output = TaskOutput(duplicates=duplicates)
        late_for = self._round(annotated, before, watermark, now_us, output)
        clean = annotated.drop(WATERMARK, ROW)
        if late_for and any(mask.any() for mask in late_for):
            self._classify_late(clean, late_for, output)
        else:
            output.accepted = clean
        return output

    def _classify_late(
        self, clean: pl.DataFrame, late_for: list[pl.Series], output: TaskOutput
    ) -> None:
        """Readings late for every step are set aside; each late row names its steps.

        The names are built for the late rows only: late rows are few, and building a
        string per reading cost a third of a second per million readings.
        """
        flags = pl.DataFrame(late_for)
        names = [mask.name for mask in late_for]
        marks = flags.select(
            pl.all_horizontal(pl.all()).alias("all"), pl.any_horizontal(pl.all()).alias("any")
        )
        all_late, any_late = marks["all"], marks["any"]
        late_flags = flags.filter(any_late)
        steps = late_flags.select(
            pl.concat_list([pl.when(pl.col(n)).then(pl.lit(n)).otherwise(None) for n in names])
            .list.drop_nulls()
            .list.join(",")
            .alias("late_for")
        ).to_series()
        output.late = clean.filter(any_late).with_columns(steps)
        output.late_count = int(all_late.sum())
        output.accepted = clean.filter(~all_late) if output.late_count else clean

    def _round(
        self,
        readings: pl.DataFrame | None,
        before: int,
        watermark: int,
        now_us: int | None,
        output: TaskOutput,
    ) -> list[pl.Series]:
        """Run every step once, each on what its input emitted; return the readings' late masks.

        ``readings`` (with their watermarks and row numbers) is None when only the
        watermark or the clock moved.
        """
        emitted: dict[str, pl.DataFrame | None] = {READINGS: readings}
        late_for: list[pl.Series] = []
        moved = watermark > before
        for step in self.order:
            operator = self.operators[step.name]
            rows = self._input_rows(step, emitted, before)
            parts: list[pl.DataFrame] = []
            if rows is not None and rows.height:
                result = operator.process(rows, watermark)
                if result.late is not None and result.late.any():
                    output.late_by_step[step.name] = int(result.late.sum())
                if (
                    result.late is not None
                    and step.name in self.reading_steps
                    and readings is not None
                ):
                    late_for.append(self._per_reading(result.late, rows, readings).alias(step.name))
            elif moved:
                result = operator.on_watermark(watermark)
            else:
                result = None
            if result is not None and result.rows is not None and result.rows.height:
                parts.append(result.rows)
            if now_us is not None:
                ticked = operator.on_tick(now_us)
                if ticked.rows is not None and ticked.rows.height:
                    parts.append(ticked.rows)
            produced = (
                pl.concat(parts, how="diagonal_relaxed")
                if len(parts) > 1
                else (parts[0] if parts else None)
            )
            emitted[step.name] = produced
            if produced is not None:
                kind = self.kinds[step.name]
                if kind is OutputKind.RESULTS:  # what steps downstream need only, not sinks
                    output.results[step.name] = produced.drop(OPENED_LATE, strict=False)
                elif kind is OutputKind.EVENTS:
                    output.events[step.name] = produced
        return late_for

    def _input_rows(
        self, step: Step, emitted: dict[str, pl.DataFrame | None], before: int
    ) -> pl.DataFrame | None:
        """What ``step`` reads this round, as observations with their watermarks."""
        rows = emitted.get(step.input)
        if rows is None or self.kinds[step.input] is not OutputKind.RESULTS:
            return rows
        # A result is an observation at its window's last instant, seen before the watermark
        # that closed it moves on.
        ts = (pl.col(END).cast(pl.Int64) - 1).cast(TS_TYPE) if END in rows.columns else None
        return rows.with_columns(
            pl.lit(None, TS_TYPE).alias(TS) if ts is None else ts.alias(TS),
            pl.lit(before, pl.Int64).alias(WATERMARK),
        )

    @staticmethod
    def _per_reading(late: pl.Series, rows: pl.DataFrame, readings: pl.DataFrame) -> pl.Series:
        """A step's late mask over its input rows, as a mask over the batch's readings."""
        if rows.height == readings.height and rows is readings:
            return late
        late_rows = rows.filter(late)[ROW]
        return readings[ROW].is_in(late_rows.implode())

    def tick(self, now_us: int) -> TaskOutput:
        """Processing time moves: an idle partition's watermark may follow it."""
        before = self.watermarks.watermark
        moved = self.watermarks.tick(now_us)
        output = TaskOutput()
        self._round(None, before, self.watermarks.watermark, now_us, output)
        if moved:
            self._evict_dedup()
        return output

    def finish(self) -> TaskOutput:
        """End of input: close every window."""
        before = self.watermarks.watermark
        self.watermarks.close()
        output = TaskOutput()
        self._round(None, before, self.watermarks.watermark, None, output)
        self._evict_dedup()
        return output

    def _evict_dedup(self) -> None:
        if self.dedup is not None:
            self.dedup.evict(self.watermarks.watermark)

    def snapshot(self) -> OperatorState:
        """The whole partition state: frames under each step's name, and its metadata."""
        meta: dict[str, object] = {"watermarks": self.watermarks.snapshot()}
        state = OperatorState(meta=meta)
        if self.dedup is not None:
            state.frames["dedup"] = self.dedup.snapshot()
        steps: dict[str, object] = {}
        for name, operator in self.operators.items():
            taken = operator.snapshot()
            for frame_name, frame in taken.frames.items():
                state.frames[f"{name}/{frame_name}"] = frame
            if taken.meta:
                steps[name] = taken.meta
        if steps:
            meta["steps"] = steps
        return state

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.watermarks.restore(state.meta["watermarks"])
        if self.dedup is not None and "dedup" in state.frames:
            self.dedup.restore(state.frames["dedup"])
        metas = state.meta.get("steps", {})
        for name, operator in self.operators.items():
            prefix = f"{name}/"
            frames = {
                key[len(prefix) :]: frame
                for key, frame in state.frames.items()
                if key.startswith(prefix)
            }
            operator.restore(OperatorState(frames=frames, meta=dict(metas.get(name, {}))))
