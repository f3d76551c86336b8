"""What every window operator shares: per-window partial state, emission, eviction, snapshots.

The state is one Polars frame, a row per open window and key: the key columns,
``window_start``/``window_end`` (microseconds), the aggregate partials, and bookkeeping
(``__revision`` emissions so far, ``__dirty`` changed since the last emission,
``__final_emitted``). A window is emitted when the watermark passes its end (or on every
change with ``emit="updates"``), re-emitted as a correction when a late reading inside the
allowed lateness changes it, and evicted once the watermark passes its end plus the
allowed lateness, so state is bounded by keys x open windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import polars as pl

from sensorstream.engine import percentiles
from sensorstream.engine.aggregates import (
    Aggregate,
    AggregatePlan,
    partial_column,
    sketch_partials,
)
from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import END, OP, OPENED_LATE, START, UPSERT
from sensorstream.engine.time import micros
from sensorstream.readings import TS_TYPE

EmitMode = Literal["on_close", "updates"]
# Bookkeeping columns of the window state (not of its results).
REVISION, DIRTY, FINAL = "__revision", "__dirty", "__final_emitted"


class WindowOperator(Operator):
    """Shared state handling; subclasses decide how readings map to windows."""

    def __init__(
        self,
        name: str,
        key: Sequence[str],
        aggregates: Sequence[Aggregate],
        allowed_lateness: timedelta,
        emit: EmitMode = "on_close",
    ) -> None:
        self.name = name
        self.key = list(key)
        self.plan = AggregatePlan(tuple(aggregates))
        self.lateness = micros(allowed_lateness)
        self.emit_mode = emit
        self.state: pl.DataFrame | None = None
        self.sketch: pl.DataFrame | None = None
        self._needs_order = any(a.function in ("first", "last") for a in aggregates)

    # -- folding -----------------------------------------------------------------------
    def _partials(self, rows: pl.DataFrame, group: list[str], *extra: pl.Expr) -> pl.DataFrame:
        """Reduce accepted raw rows to partial rows, one per group (``extra``: more aggregates)."""
        if self._needs_order:
            rows = rows.sort("ts", maintain_order=True)
        return rows.group_by(group).agg(*self.plan.partial_exprs(), *extra)

    def _merge(self, parts: pl.DataFrame, group: list[str]) -> pl.DataFrame:
        """Merge state rows (first) and new partial rows that share a group.

        A window keeps how it was opened (:data:`OPENED_LATE`): the state's row comes first.
        """
        opened = [pl.col(OPENED_LATE).first()] if OPENED_LATE in parts.columns else []
        return parts.group_by(group, maintain_order=True).agg(
            *self.plan.merge_exprs(),
            pl.col(END).max(),
            pl.col(REVISION).max(),
            pl.col(DIRTY).any(),
            pl.col(FINAL).any(),
            *opened,
        )

    @staticmethod
    def _fresh(partials: pl.DataFrame) -> pl.DataFrame:
        opened = [] if OPENED_LATE in partials.columns else [pl.lit(False).alias(OPENED_LATE)]
        return partials.with_columns(
            pl.lit(0, pl.Int64).alias(REVISION),
            pl.lit(True).alias(DIRTY),
            pl.lit(False).alias(FINAL),
            *opened,
        )

    def _concat_state(self, fresh: pl.DataFrame) -> pl.DataFrame:
        if self.state is None or self.state.height == 0:
            return fresh
        return pl.concat([self.state, fresh.select(self.state.columns)], how="vertical_relaxed")

    def _fold_sketch(self, rows: pl.DataFrame, group: list[str]) -> None:
        sketch = self._sketch_of(rows, group)
        if sketch is None:
            return
        parts = [sketch] if self.sketch is None else [self.sketch, sketch]
        self.sketch = percentiles.merge(parts, [*self.key, START])

    def _sketch_of(self, rows: pl.DataFrame, group: list[str]) -> pl.DataFrame | None:
        return sketch_partials(rows, group, self.plan)

    # -- emission and eviction -------------------------------------------------------------
    def _emit_and_evict(self, watermark: int) -> pl.DataFrame | None:
        """Emit what changed and may be shown; then drop windows past their lateness."""
        if self.state is None or self.state.height == 0:
            return None
        if self.emit_mode == "on_close":
            # Only closed windows are emitted or evicted: while none is, nothing changes,
            # and most batches close no window, so one column minimum settles them.
            earliest_end = self.state[END].min()
            if isinstance(earliest_end, int) and earliest_end > watermark:
                return None
        closed = pl.col(END) <= watermark
        if self.emit_mode == "on_close":
            due = pl.col(DIRTY) & closed
        else:
            due = pl.col(DIRTY) | (closed & ~pl.col(FINAL))
        marked = self.state.with_columns(due.alias("__due"), closed.alias("__closed"))
        emitting = marked.filter(pl.col("__due"))
        results = self._results(emitting) if emitting.height else None
        updated = marked.with_columns(
            pl.when(pl.col("__due"))
            .then(pl.col(REVISION) + 1)
            .otherwise(pl.col(REVISION))
            .alias(REVISION),
            pl.when(pl.col("__due")).then(False).otherwise(pl.col(DIRTY)).alias(DIRTY),
            (pl.col(FINAL) | (pl.col("__due") & pl.col("__closed"))).alias(FINAL),
        ).drop("__due", "__closed")
        alive = pl.col(END) + self.lateness > watermark
        self.state = updated.filter(alive)
        if self.sketch is not None and self.sketch.height:
            live_windows = self.state.select([*self.key, START])
            self.sketch = self.sketch.join(
                live_windows, on=[*self.key, START], how="semi", nulls_equal=True
            )
        return results

    def _results(self, emitting: pl.DataFrame) -> pl.DataFrame:
        out = emitting.select(
            *self.key,
            pl.col(START).cast(TS_TYPE),
            pl.col(END).cast(TS_TYPE),
            *self.plan.finish_exprs(),
            pl.col(REVISION).alias("revision"),
            pl.col("__closed").alias("final"),
            pl.lit(UPSERT).alias(OP),
            (pl.col(OPENED_LATE) if OPENED_LATE in emitting.columns else pl.lit(False)).alias(
                OPENED_LATE
            ),
        )
        outputs = list(self.plan.percentile_outputs())
        if outputs and self.sketch is not None:
            windows = emitting.select([*self.key, START])
            sketch = self.sketch.join(windows, on=[*self.key, START], how="semi", nulls_equal=True)
            if sketch.height:
                values = percentiles.quantiles(sketch, [*self.key, START], outputs).with_columns(
                    pl.col(START).cast(TS_TYPE)
                )
                out = out.join(values, on=[*self.key, START], how="left", nulls_equal=True)
            for measurement, name, _ in outputs:
                if name not in out.columns:
                    out = out.with_columns(pl.lit(None, pl.Float64).alias(name))
                # A bucket's representative may lie just outside the values it holds; an
                # estimate is never below the window's minimum nor above its maximum.
                low, high = (emitting[partial_column(measurement, end)] for end in ("min", "max"))
                out = out.with_columns(
                    pl.col(name).clip(low.cast(pl.Float64), high.cast(pl.Float64))
                )
        ordered = [
            *self.key,
            START,
            END,
            *self.plan.output_names(),
            "revision",
            "final",
            OP,
            OPENED_LATE,
        ]
        return out.select(ordered)

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Emit and evict after the watermark moved without readings."""
        return OperatorOutput(rows=self._emit_and_evict(watermark))

    # -- snapshots ----------------------------------------------------------------------
    def snapshot(self) -> OperatorState:
        """State frames as they are; they are immutable, so no copy is needed."""
        frames = {}
        if self.state is not None:
            frames["windows"] = self.state
        if self.sketch is not None:
            frames["sketch"] = self.sketch
        return OperatorState(frames=frames)

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.state = state.frames.get("windows")
        self.sketch = state.frames.get("sketch")
