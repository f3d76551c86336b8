"""Session windows: a key's readings closer than ``gap`` to each other form one session.

A session is [first reading, last reading + gap). Readings that bridge two sessions merge
them (touching sessions merge, as in Flink); a merged session keeps the earliest start, and
any result already emitted under another start is retracted with a ``delete`` row. A reading
is late if its own session [t, t + gap) ended more than the allowed lateness before the
watermark that held before it. A session that is final and evicted is never reopened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import polars as pl

from sensorstream.engine import percentiles
from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.operator import WATERMARK, OperatorOutput
from sensorstream.engine.outputs import DELETE, END, OP, OPENED_LATE, START
from sensorstream.engine.time import micros
from sensorstream.engine.windows.base import DIRTY, FINAL, REVISION, EmitMode, WindowOperator
from sensorstream.errors import ConfigError
from sensorstream.readings import TS_TYPE

if TYPE_CHECKING:
    from sensorstream.engine.windows import WindowStep

_SESSION = "__session"


@dataclass(frozen=True)
class SessionWindow:
    """``SessionWindow(gap=timedelta(minutes=5))``: a session ends after 5 minutes of silence."""

    gap: timedelta

    def __post_init__(self) -> None:
        if self.gap <= timedelta(0):
            msg = f"a session window's gap must be positive, got {self.gap}"
            raise ConfigError(msg)

    def build(self, step: WindowStep, allowed_lateness: timedelta) -> SessionOperator:
        """The operator that runs this window for one partition."""
        return SessionOperator(
            step.name,
            gap=self.gap,
            key=step.key,
            aggregates=step.aggregates,
            allowed_lateness=allowed_lateness,
            emit=step.emit,
        )


class SessionOperator(WindowOperator):
    """Per-key sessions, merged as readings arrive in any order."""

    def __init__(
        self,
        name: str,
        *,
        gap: timedelta,
        key: Sequence[str],
        aggregates: Sequence[Aggregate],
        allowed_lateness: timedelta,
        emit: EmitMode = "on_close",
    ) -> None:
        super().__init__(name, key, aggregates, allowed_lateness, emit)
        self.gap = micros(gap)

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Fold readings into sessions, merging the sessions they bridge."""
        ts = pl.col("ts").cast(pl.Int64)
        late = (ts + self.gap + self.lateness <= pl.col(WATERMARK)).alias("late")
        marked = batch.with_columns(late)
        accepted = marked.filter(~pl.col("late")).with_columns(ts.alias(START))
        changes: list[pl.DataFrame | None] = []
        while accepted.height:
            cut = self._first_reading_after_eviction(accepted)
            if cut is None:
                changes.append(self._fold(accepted))
                break
            # Evict what the watermark closed before this reading arrived, as reading by
            # reading would, so that it starts a fresh session instead of reopening one.
            changes.append(self._fold(accepted.head(cut)))
            changes.append(self._emit_and_evict(int(accepted[WATERMARK][cut])))
            accepted = accepted.slice(cut)
        changes.append(self._emit_and_evict(watermark_after))
        frames = [frame for frame in changes if frame is not None and frame.height]
        results = pl.concat(frames, how="diagonal_relaxed") if frames else None
        if results is not None and len(changes) > 2:  # cut: a window may have changed twice
            results = results.unique([*self.key, START], keep="last", maintain_order=True)
        return OperatorOutput(rows=results, late=marked["late"])

    def _first_reading_after_eviction(self, accepted: pl.DataFrame) -> int | None:
        """The first reading that may touch a session evicted earlier in this batch, if any.

        A session is evicted for good once the watermark passes its end plus the lateness.
        Ends only grow, so the end a session has before the batch (or a reading's own
        ``ts + gap``) bounds the moment it can be evicted from below: the test may cut where
        nothing was evicted, which costs a fold, never a wrong result. Only a reading at least
        the lateness behind the watermark can touch an evicted session, so the usual batch
        costs one check.
        """
        start, watermark = pl.col(START), pl.col(WATERMARK)
        behind = start + self.lateness <= watermark
        if not accepted.select(behind.any()).item():
            return None
        expiry = self._per_key((start + self.gap + self.lateness).cum_min().shift(1))
        frame = accepted
        if self.state is not None and self.state.height:
            expiries = (pl.col(END).min() + self.lateness).alias("__expiry")
            if self.key:
                frame = accepted.join(
                    self.state.group_by(self.key).agg(expiries),
                    on=self.key,
                    how="left",
                    nulls_equal=True,
                    maintain_order="left",
                )
            else:
                frame = accepted.with_columns(
                    pl.lit(self.state.select(expiries).item()).alias("__expiry")
                )
            expiry = pl.min_horizontal(expiry, pl.col("__expiry"))
        cut = frame.select((behind & (watermark >= expiry)).fill_null(False))
        positions = cut.to_series().arg_true()
        positions = positions.filter(positions > 0)
        return int(positions[0]) if positions.len() else None

    def _per_key(self, expr: pl.Expr) -> pl.Expr:
        """``expr`` computed per key; over the whole batch when the step has no key."""
        return expr.over(self.key) if self.key else expr

    def _fold(self, accepted: pl.DataFrame) -> pl.DataFrame:
        group = [*self.key, START]
        partials = self._partials(accepted, group).with_columns(
            (pl.col(START) + self.gap).alias(END)
        )
        combined = self._concat_state(self._fresh(partials)).sort(group, maintain_order=True)
        previous_end = self._per_key(pl.col(END).cum_max().shift(1))
        starts_session = previous_end.is_null() | (pl.col(START) > previous_end)
        combined = combined.with_columns(
            self._per_key(starts_session.cast(pl.Int64).cum_sum()).alias(_SESSION)
        )
        # Whether late readings opened a session is not tracked (a session grows and merges).
        not_tracked = [pl.lit(False).alias(OPENED_LATE)] if OPENED_LATE in combined.columns else []
        first_start = pl.col(START).min()
        survivor = pl.col(START) == first_start
        merged = combined.group_by([*self.key, _SESSION], maintain_order=True).agg(
            first_start.alias(START),
            pl.col(END).max(),
            *self.plan.merge_exprs(),
            pl.col(REVISION).filter(survivor).max().fill_null(0),
            (pl.col(DIRTY).any() | (pl.len() > 1)).alias(DIRTY),
            pl.col(FINAL).filter(survivor).any().alias(FINAL),
            pl.col(START).filter((pl.col(REVISION) > 0) & ~survivor).alias("__retract"),
            *not_tracked,
        )
        retract = (
            merged.select(*self.key, pl.col("__retract").alias(START))
            .explode(START)
            .drop_nulls(START)
            .with_columns(pl.col(START).cast(TS_TYPE), pl.lit(DELETE).alias(OP))
        )
        if self.plan.percentile_measurements:
            mapping = (
                combined.select(*self.key, pl.col(START).alias("__old"), _SESSION)
                .join(
                    merged.select(*self.key, _SESSION, START),
                    on=[*self.key, _SESSION],
                    nulls_equal=True,
                )
                .drop(_SESSION)
                .unique()
            )
            fresh_sketch = self._sketch_of(accepted, group)
            sketches = [s for s in (self.sketch, fresh_sketch) if s is not None]
            remapped = [
                s.rename({START: "__old"})
                .join(mapping, on=[*self.key, "__old"], nulls_equal=True)
                .drop("__old")
                for s in sketches
            ]
            self.sketch = percentiles.merge(remapped, [*self.key, START])
        self.state = merged.drop(_SESSION, "__retract").select(combined.drop(_SESSION).columns)
        return retract
