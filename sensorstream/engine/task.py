"""One partition's processing: deduplicate, track watermarks, run the step graph.

Each input partition has its own task with its own state, so a partition's state (with
its source positions, kept by the runtime) can be checkpointed, restored, or moved to
another worker as a unit. A pipeline of several streams gives partition ``n`` of every
stream to task ``n`` (the streams are co-partitioned by their key), so a join sees both
of its sides. Each stream has its own watermark and deduplication; a step's watermark is
the minimum over the streams it reads, directly or through other steps. Every record
that enters is classified exactly once: ``duplicate``, ``late`` (too late for every
time-sensitive step that reads its stream) or ``accepted``.

Steps run in the graph's order, each on what its input emitted in the same round (a
source batch, a watermark move, a tick). What a step emits reaches the steps reading it
before the watermark moves on for them: a window result closed by this batch carries the
watermark that held before the batch, so an hourly roll-up still takes the last minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from sensorstream.engine.dedup import Deduplicator
from sensorstream.engine.joins.tables import TableOperator
from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import END, OPENED_LATE, ROW, WATERMARK, OutputKind
from sensorstream.engine.plan import Dedup, EnginePlan, EventTime, StreamDecl
from sensorstream.engine.steps import READINGS, Step
from sensorstream.engine.tables import VersionedTable
from sensorstream.engine.time import micros
from sensorstream.engine.watermarks import MAX_WATERMARK, WatermarkTracker
from sensorstream.readings import DEVICE, MESSAGE_ID, TS, TS_TYPE

__all__ = ["Dedup", "EnginePlan", "EventTime", "PartitionTask", "StreamDecl", "TaskOutput"]


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
    # Rows a step refused (a join's record with no reference row), with reason columns.
    rejected: dict[str, pl.DataFrame] = field(default_factory=dict)
    stream: str = READINGS  # the stream whose batch this was
    # Rows each step emitting a stream produced (a join's, a derive's): how fast a derived
    # stream flows, which no source batch says (the overview's records/s per stream).
    rows_by_step: dict[str, int] = field(default_factory=dict)


class _StreamState:
    """One stream's intake in one partition: its watermark and its deduplication."""

    def __init__(self, decl: StreamDecl, plan: EnginePlan) -> None:
        policy = decl.event_time or plan.event_time
        idle = micros(policy.idle_timeout) if policy.idle_timeout is not None else None
        self.watermarks = WatermarkTracker(micros(policy.out_of_orderness), idle)
        dedup = decl.dedup or plan.dedup
        self.dedup: Deduplicator | None = None
        if dedup.enabled:
            keys: Sequence[str] = (
                [MESSAGE_ID] if dedup.by == "message_id" else [DEVICE, TS, *decl.measurements]
            )
            self.dedup = Deduplicator(keys, micros(plan.dedup_horizon()))

    def evict(self) -> None:
        if self.dedup is not None:
            self.dedup.evict(self.watermarks.watermark)


class PartitionTask:
    """Runs the plan over one partition's records, batch after batch, stream by stream."""

    def __init__(self, plan: EnginePlan) -> None:
        self.plan = plan
        self.streams = {decl.name: _StreamState(decl, plan) for decl in plan.inputs}
        graph = plan.graph
        self.order: tuple[Step, ...] = graph.order
        self.kinds = {name: shape.kind for name, shape in graph.outputs.items()}
        self.operators: dict[str, Operator] = {
            step.name: step.build_of(graph.shapes_of(step), plan.event_time) for step in graph.order
        }
        # The streams whose watermarks reach each step: its watermark is their minimum.
        self.step_streams = {step.name: graph.streams_of(step.name) for step in graph.order}
        self.tables: dict[str, VersionedTable] = {
            decl.name: VersionedTable(decl) for decl in plan.tables
        }
        for name, operator in self.operators.items():
            if isinstance(operator, TableOperator):
                self.tables[name] = operator.table
        for operator in self.operators.values():
            operator.bind_tables(self.tables)
        self.table_readers = {
            table: [step for step in graph.order if table in step.inputs[1:]]
            for table in self.tables
        }
        # Per stream, the steps whose input rows are its records (directly or through
        # derive steps and table joins): the ones whose lateness classifies its records.
        self.reading_steps = {stream: self._fed_by(stream) for stream in self.streams}

    def _fed_by(self, stream: str) -> set[str]:
        fed = {stream}
        for step in self.order:
            if step.input in fed and self.kinds[step.input] is OutputKind.STREAM:
                fed.add(step.name)
        return fed - {stream}

    @property
    def watermark(self) -> int:
        """The partition's watermark in microseconds: the least of its streams'."""
        return min((s.watermarks.watermark for s in self.streams.values()), default=0)

    def watermark_of(self, stream: str) -> int:
        """One stream's watermark in this partition."""
        return self.streams[stream].watermarks.watermark

    def _watermarks(self) -> dict[str, int]:
        return {name: s.watermarks.watermark for name, s in self.streams.items()}

    def process(self, readings: pl.DataFrame, now_us: int, stream: str = READINGS) -> TaskOutput:
        """Classify and fold one batch of valid records of ``stream`` (in arrival order)."""
        intake = self.streams[stream]
        before = self._watermarks()
        annotated = intake.watermarks.annotate(readings, now_us)
        duplicates = 0
        if intake.dedup is not None:
            duplicate = intake.dedup.split(annotated)
            duplicates = int(duplicate.sum())
            if duplicates:
                annotated = annotated.filter(~duplicate)
            intake.evict()
        annotated = annotated.with_row_index(ROW)
        output = TaskOutput(duplicates=duplicates, stream=stream)
        late_for = self._round(stream, annotated, before, now_us, output)
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
        stream: str | None,
        records: pl.DataFrame | None,
        before: Mapping[str, int],
        now_us: int | None,
        output: TaskOutput,
    ) -> list[pl.Series]:
        """Run every step once, each on what its inputs emitted; return the records' late masks.

        ``records`` (of ``stream``, with their watermarks and row numbers) is None when only
        watermarks or the clock moved.
        """
        after = self._watermarks()
        emitted: dict[str, pl.DataFrame | None] = {}
        if stream is not None:
            emitted[stream] = records
        fed = self.reading_steps.get(stream, set()) if stream is not None else set()
        late_for: list[pl.Series] = []
        for step in self.order:
            operator = self.operators[step.name]
            streams = self.step_streams[step.name]
            step_before = min((before[s] for s in streams), default=MAX_WATERMARK)
            step_after = min((after[s] for s in streams), default=MAX_WATERMARK)
            parts: list[pl.DataFrame] = []
            called = False
            for index, name in enumerate(step.inputs):
                rows = self._input_rows(name, emitted, step_before)
                if rows is None or not rows.height:
                    continue
                called = True
                result = operator.process_from(index, rows, step_after)
                self._collect(step, result, parts, output)
                if (
                    result.late is not None
                    and records is not None
                    and (name == stream or name in fed)
                    and ROW in rows.columns
                ):
                    mask = self._per_reading(result.late, rows, records).alias(step.name)
                    if late_for and late_for[-1].name == step.name:  # both inputs: either
                        mask = (late_for.pop() | mask).alias(step.name)
                    late_for.append(mask)
            moved = step_after > step_before
            if moved and (not called or operator.watermark_every_round):
                self._collect(step, operator.on_watermark(step_after), parts, output)
            if now_us is not None:
                self._collect(step, operator.on_tick(now_us), parts, output)
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
                elif kind is OutputKind.STREAM:
                    counted = output.rows_by_step.get(step.name, 0)
                    output.rows_by_step[step.name] = counted + produced.height
        self._evict_tables(after)
        return late_for

    @staticmethod
    def _collect(
        step: Step, result: OperatorOutput, parts: list[pl.DataFrame], output: TaskOutput
    ) -> None:
        """Keep what one call emitted, and count what it found late or refused."""
        if result.late is not None and result.late.any():
            output.late_by_step[step.name] = output.late_by_step.get(step.name, 0) + int(
                result.late.sum()
            )
        if result.rows is not None and result.rows.height:
            parts.append(result.rows)
        if result.rejected is not None and result.rejected.height:
            refused = result.rejected.drop(ROW, WATERMARK, strict=False)
            earlier = output.rejected.get(step.name)
            output.rejected[step.name] = (
                refused if earlier is None else pl.concat([earlier, refused], how="diagonal")
            )

    def _input_rows(
        self, name: str, emitted: dict[str, pl.DataFrame | None], before: int
    ) -> pl.DataFrame | None:
        """What a step reads of ``name`` this round, as observations with their watermarks."""
        rows = emitted.get(name)
        if rows is None or self.kinds[name] is not OutputKind.RESULTS:
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
        return readings[ROW].is_in(late_rows.drop_nulls().implode())

    def _evict_tables(self, watermarks: Mapping[str, int]) -> None:
        """Drop table versions no reader can still ask for (only the latest, for lookups)."""
        lateness = micros(self.plan.event_time.allowed_lateness)
        for name, table in self.tables.items():
            horizon = MAX_WATERMARK
            for step in self.table_readers[name]:
                if getattr(step, "mode", "latest") == "as_of":
                    streams = self.step_streams[step.name]
                    mark = min((watermarks[s] for s in streams), default=MAX_WATERMARK)
                    horizon = min(horizon, mark - lateness)
            table.evict(horizon)

    def apply_table(self, name: str, rows: pl.DataFrame, *, full: bool, at_us: int) -> None:
        """A reference table's new content (``full``: the whole table) from ``at_us`` on."""
        table = self.tables[name]
        if full:
            table.replace_all(rows, at_us)
        else:
            table.upsert(rows, at_us)

    def tick(self, now_us: int) -> TaskOutput:
        """Processing time moves: an idle stream's watermark may follow it."""
        before = self._watermarks()
        moved = [s for s in self.streams.values() if s.watermarks.tick(now_us)]
        output = TaskOutput()
        self._round(None, None, before, now_us, output)
        for intake in moved:
            intake.evict()
        return output

    def close_stream(self, stream: str) -> TaskOutput:
        """One stream's input ended: it holds no step's watermark back any more."""
        before = self._watermarks()
        self.streams[stream].watermarks.close()
        output = TaskOutput(stream=stream)
        self._round(None, None, before, None, output)
        self.streams[stream].evict()
        return output

    def finish(self) -> TaskOutput:
        """End of input: close every window."""
        before = self._watermarks()
        for intake in self.streams.values():
            intake.watermarks.close()
        output = TaskOutput()
        self._round(None, None, before, None, output)
        for intake in self.streams.values():
            intake.evict()
        return output

    def snapshot(self) -> OperatorState:
        """The whole partition state: frames under each step's name, and its metadata."""
        meta: dict[str, object] = {
            "watermarks": {name: s.watermarks.snapshot() for name, s in self.streams.items()}
        }
        state = OperatorState(meta=meta)
        for name, intake in self.streams.items():
            if intake.dedup is not None:
                state.frames[f"dedup:{name}"] = intake.dedup.snapshot()
        for name in {decl.name for decl in self.plan.tables}:
            for frame_name, frame in self.tables[name].snapshot().items():
                state.frames[f"table:{name}/{frame_name}"] = frame
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
        for name, tracked in state.meta["watermarks"].items():
            if name in self.streams:
                self.streams[name].watermarks.restore(tracked)
        for name, intake in self.streams.items():
            frame = state.frames.get(f"dedup:{name}")
            if intake.dedup is not None and frame is not None:
                intake.dedup.restore(frame)
        for decl in self.plan.tables:
            self.tables[decl.name].restore(_prefixed(state.frames, f"table:{decl.name}/"))
        metas = state.meta.get("steps", {})
        for name, operator in self.operators.items():
            frames = _prefixed(state.frames, f"{name}/")
            operator.restore(OperatorState(frames=frames, meta=dict(metas.get(name, {}))))


def _prefixed(frames: Mapping[str, pl.DataFrame], prefix: str) -> dict[str, pl.DataFrame]:
    """The frames whose names start with ``prefix``, under the rest of their names."""
    return {key[len(prefix) :]: frame for key, frame in frames.items() if key.startswith(prefix)}
