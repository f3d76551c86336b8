"""The operator behind tumbling and hopping windows: each reading falls in fixed windows.

A reading at time t belongs to every window [start, start + size) with start on the
slide grid and start <= t < start + size. It is late only if even the latest of those
windows ended more than the allowed lateness before the watermark that held before it;
earlier windows that are already final simply do not take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from math import ceil

import polars as pl

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.operator import WATERMARK, OperatorOutput
from sensorstream.engine.outputs import END, OPENED_LATE, START
from sensorstream.engine.time import micros
from sensorstream.engine.windows.base import EmitMode, WindowOperator


class FixedWindowOperator(WindowOperator):
    """Windows of one size on a grid of one slide (slide == size: tumbling)."""

    def __init__(
        self,
        name: str,
        *,
        size: timedelta,
        slide: timedelta,
        offset: timedelta,
        key: Sequence[str],
        aggregates: Sequence[Aggregate],
        allowed_lateness: timedelta,
        emit: EmitMode = "on_close",
    ) -> None:
        super().__init__(name, key, aggregates, allowed_lateness, emit)
        self.size, self.slide, self.offset = micros(size), micros(slide), micros(offset)
        self.copies = ceil(self.size / self.slide)

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Fold the batch into its windows; report rows too late for every window."""
        ts = pl.col("ts").cast(pl.Int64)
        last_start = (ts - self.offset) // self.slide * self.slide + self.offset
        marked = batch.with_columns(last_start.alias(START))
        late_mask = (marked[START] + (self.size + self.lateness) <= marked[WATERMARK]).alias("late")
        late_count = late_mask.sum()
        if late_count < batch.height:
            accepted = marked.filter(~late_mask) if late_count else marked
            copies = [accepted]
            shifted = pl.col(START) + self.size
            for i in range(1, self.copies):
                copies.append(
                    accepted.lazy()
                    .with_columns((pl.col(START) - i * self.slide).alias(START))
                    .filter((shifted > ts) & (shifted + self.lateness > pl.col(WATERMARK)))
                    .collect()
                )
            rows = copies[0] if len(copies) == 1 else pl.concat(copies)
            group = [*self.key, START]
            self._fold_sketch(rows, group)
            # The group-by stays eager on purpose: the lazy engine may add up a group's floats
            # in a varying order, and results must be identical to the bit after a restart.
            # Readings arrive in watermark order, so the window's earliest watermark is
            # its first reading's: past the window's end, the window was opened late.
            opened = (pl.col(WATERMARK).min() >= pl.col(START).first() + self.size).alias(
                OPENED_LATE
            )
            partials = self._partials(rows, group, opened).with_columns(
                (pl.col(START) + self.size).alias(END)
            )
            self.state = self._merge(self._concat_state(self._fresh(partials)), group)
        return OperatorOutput(rows=self._emit_and_evict(watermark_after), late=late_mask)
