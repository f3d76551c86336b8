"""An operator wrapper that keeps what a step emits, for tests of steps whose rows stay inside.

A stream step's output (a join's enriched rows, a derive step's) reaches only the steps
downstream, never a :class:`~sensorstream.engine.task.TaskOutput`. :func:`recorded` wraps
a task's operator for one step, so a test can read what it emitted, across a snapshot and
restore too (the wrapper hands both to the operator it wraps).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.tables import VersionedTable
from sensorstream.engine.task import PartitionTask


class Recorder(Operator):
    """Runs ``inner`` and keeps every row it emits in ``rows`` (shared, if given)."""

    def __init__(self, inner: Operator, rows: list[pl.DataFrame] | None = None) -> None:
        self.name, self.inner = inner.name, inner
        self.rows: list[pl.DataFrame] = rows if rows is not None else []

    @property
    def watermark_every_round(self) -> bool:  # type: ignore[override]  # the wrapped one says
        """Whatever the wrapped operator says."""
        return self.inner.watermark_every_round

    def _kept(self, result: OperatorOutput) -> OperatorOutput:
        if result.rows is not None and result.rows.height:
            self.rows.append(result.rows)
        return result

    def emitted(self) -> pl.DataFrame:
        """Every row kept so far, and forget them."""
        frame = pl.concat(self.rows, how="diagonal_relaxed") if self.rows else pl.DataFrame()
        self.rows.clear()
        return frame

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """The wrapped operator's output, kept."""
        return self._kept(self.inner.process(batch, watermark_after))

    def process_from(self, index: int, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """The wrapped operator's output, kept."""
        return self._kept(self.inner.process_from(index, batch, watermark_after))

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """The wrapped operator's output, kept."""
        return self._kept(self.inner.on_watermark(watermark))

    def on_tick(self, now_us: int) -> OperatorOutput:
        """The wrapped operator's output, kept."""
        return self._kept(self.inner.on_tick(now_us))

    def bind_tables(self, tables: Mapping[str, VersionedTable]) -> None:
        """Bind the wrapped operator."""
        self.inner.bind_tables(tables)

    def snapshot(self) -> OperatorState:
        """The wrapped operator's state."""
        return self.inner.snapshot()

    def restore(self, state: OperatorState) -> None:
        """Restore the wrapped operator."""
        self.inner.restore(state)


def recorded(task: PartitionTask, step: str, rows: list[pl.DataFrame] | None = None) -> Recorder:
    """Wrap ``task``'s operator for ``step`` in a :class:`Recorder` and return it."""
    recorder = Recorder(task.operators[step], rows)
    task.operators[step] = recorder
    return recorder
