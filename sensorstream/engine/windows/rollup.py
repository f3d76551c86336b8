"""Windows over another window's results: 1-minute means rolled up into hourly ones, exactly.

A result is an observation at the last instant of its window (``ts`` = ``window_end`` -
1 us), so a minute falls in the hour it belongs to. Unlike a reading, a result can change:
a late reading corrects a minute (a new revision), a session merge retracts one. So the
roll-up keeps the latest version of each result it holds (by the upstream key and window
start) and recomputes the windows a change touches from those rows, instead of folding
the change in on top: a correction replaces what the old version contributed, for every
aggregate, min and max and percentiles included. It holds a window's inputs until the
window is evicted, so its state is bounded by keys x open windows x inputs per window.
"""

from __future__ import annotations

import polars as pl

from sensorstream.engine import percentiles
from sensorstream.engine.aggregates import sketch_partials
from sensorstream.engine.operator import WATERMARK, Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import DELETE, END, OP, OPENED_LATE, START, UPSERT
from sensorstream.engine.windows.base import DIRTY, FINAL, REVISION
from sensorstream.engine.windows.fixed import FixedWindowOperator
from sensorstream.readings import TS, TS_TYPE

UP_START, UP_END = "__up_start", "__up_end"


class RollupOperator(Operator):
    """A tumbling or hopping window over results, recomputing the windows a change touches."""

    def __init__(self, inner: FixedWindowOperator, *, upstream_key: tuple[str, ...]) -> None:
        self.inner = inner
        self.name = inner.name
        self.identity = [*upstream_key, UP_START]
        self.group = [*inner.key, START]
        self.inputs: pl.DataFrame | None = None  # latest upstream rows, one per downstream window

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Take in changed results: replace their rows, recompute their windows, emit."""
        inner = self.inner
        changes = batch.rename({START: UP_START, END: UP_END}, strict=False)
        ts = pl.col(TS).cast(pl.Int64)
        last_start = (ts - inner.offset) // inner.slide * inner.slide + inner.offset
        late = (last_start + inner.size + inner.lateness <= pl.col(WATERMARK)) & (
            pl.col(OP) == UPSERT
        )
        changes = changes.with_columns(late.fill_null(False).alias("__late"))
        upserts = changes.filter((pl.col(OP) == UPSERT) & ~pl.col("__late"))
        copies = [
            upserts.with_columns((last_start - i * inner.slide).alias(START))
            for i in range(inner.copies)
        ]
        alive = (pl.col(START) + inner.size > ts) & (
            pl.col(START) + inner.size + inner.lateness > pl.col(WATERMARK)
        )
        assigned = pl.concat(copies).filter(alive) if copies else upserts
        assigned = assigned.drop(WATERMARK, OP, "__late", strict=False)
        touched_identities = changes.filter(~pl.col("__late")).select(self.identity).unique()
        affected = [assigned.select(self.group)]
        if self.inputs is not None and self.inputs.height:
            replaced = self.inputs.join(
                touched_identities, on=self.identity, how="semi", nulls_equal=True
            )
            affected.append(replaced.select(self.group))
            kept = self.inputs.join(
                touched_identities, on=self.identity, how="anti", nulls_equal=True
            )
            self.inputs = pl.concat([kept, assigned.select(kept.columns)], how="vertical_relaxed")
        else:
            self.inputs = assigned
        windows = pl.concat(affected, how="vertical_relaxed").unique()
        retracted = self._recompute(windows)
        results = inner._emit_and_evict(watermark_after)
        self._evict()
        frames = [frame for frame in (retracted, results) if frame is not None and frame.height]
        rows = pl.concat(frames, how="diagonal_relaxed") if frames else None
        return OperatorOutput(rows=rows, late=changes["__late"])

    def _recompute(self, windows: pl.DataFrame) -> pl.DataFrame | None:
        """Rebuild the partials of these windows from their inputs; retract emptied ones."""
        inner, group = self.inner, self.group
        if windows.height == 0 or self.inputs is None:
            return None
        rows = self.inputs.join(windows, on=group, how="semi", nulls_equal=True)
        partials = inner._partials(rows, group).with_columns(
            (pl.col(START) + inner.size).alias(END)
        )
        state = inner.state
        if state is None or state.height == 0:
            inner.state = inner._fresh(partials)
            inner._fold_sketch(rows, group)
            return None
        old = state.join(windows, on=group, how="semi", nulls_equal=True)
        bookkeeping = old.select(*group, REVISION, FINAL)
        fresh = (
            partials.join(bookkeeping, on=group, how="left", nulls_equal=True)
            .with_columns(
                pl.col(REVISION).fill_null(0),
                pl.col(FINAL).fill_null(False),
                pl.lit(True).alias(DIRTY),
                pl.lit(False).alias(OPENED_LATE),  # not tracked for roll-ups
            )
            .select(state.columns)
        )
        kept = state.join(windows, on=group, how="anti", nulls_equal=True)
        inner.state = pl.concat([kept, fresh], how="vertical_relaxed")
        if inner.sketch is not None or inner.plan.percentile_measurements:
            sketch = sketch_partials(rows, group, inner.plan)
            parts = (
                []
                if inner.sketch is None
                else [inner.sketch.join(windows, on=group, how="anti", nulls_equal=True)]
            )
            if sketch is not None:
                parts.append(sketch)
            inner.sketch = percentiles.merge(parts, group) if parts else None
        emptied = old.join(partials, on=group, how="anti", nulls_equal=True)
        emptied = emptied.filter(pl.col(REVISION) > 0)
        if emptied.height == 0:
            return None
        return emptied.select(*inner.key, pl.col(START).cast(TS_TYPE), pl.lit(DELETE).alias(OP))

    def _evict(self) -> None:
        """Forget the inputs of windows the inner operator has evicted."""
        if self.inputs is None:
            return
        state = self.inner.state
        if state is None or state.height == 0:
            self.inputs = self.inputs.clear()
            return
        self.inputs = self.inputs.join(
            state.select(self.group), on=self.group, how="semi", nulls_equal=True
        )

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Emit and evict after the watermark moved without changes."""
        output = self.inner.on_watermark(watermark)
        self._evict()
        return output

    def snapshot(self) -> OperatorState:
        """The inner window state and the inputs held."""
        state = self.inner.snapshot()
        if self.inputs is not None:
            state.frames["inputs"] = self.inputs
        return state

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        frames = dict(state.frames)
        self.inputs = frames.pop("inputs", None)
        self.inner.restore(OperatorState(frames=frames, meta=state.meta))
