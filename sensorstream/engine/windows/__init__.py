"""Window declarations (what the user writes) and the operators that run them.

A :class:`WindowStep` reads readings (or a derive step over them) and folds each reading
into its windows; it may also read another window step's results (1-minute means rolled up
into hourly ones): then each result is an observation at the last instant of its window,
and a corrected result replaces what it contributed (:mod:`.rollup`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import polars as pl

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.operator import Operator
from sensorstream.engine.outputs import END, FINAL, OP, REVISION, START, OutputKind, Shape
from sensorstream.engine.steps import READINGS, Step, StepError
from sensorstream.engine.windows.base import EmitMode, WindowOperator
from sensorstream.engine.windows.fixed import FixedWindowOperator
from sensorstream.engine.windows.hopping import HoppingWindow
from sensorstream.engine.windows.rollup import RollupOperator
from sensorstream.engine.windows.session import SessionWindow
from sensorstream.engine.windows.tumbling import TumblingWindow
from sensorstream.readings import TS_TYPE

if TYPE_CHECKING:
    from sensorstream.engine.time import EventTime

Window = TumblingWindow | HoppingWindow | SessionWindow


@dataclass(frozen=True)
class WindowStep(Step):
    """A declared windowed aggregation: which window, grouped by which columns, computing what."""

    name: str
    window: Window
    key: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    emit: EmitMode = "on_close"
    input: str = READINGS

    @property
    def span(self) -> timedelta:
        """The window's size (a session's gap)."""
        return self.window.gap if isinstance(self.window, SessionWindow) else self.window.size

    def output_shape(self, source: Shape) -> Shape:
        """One result row per key and window: key columns, bounds, outputs, bookkeeping."""
        if source.kind is OutputKind.EVENTS:
            raise StepError(self.name, "input", "a window reads readings or results, not alerts")
        if source.kind is OutputKind.RESULTS and isinstance(self.window, SessionWindow):
            why = "a session window reads readings only; roll results up with tumbling or hopping"
            raise StepError(self.name, "window", why)
        for index, column in enumerate(self.key):
            problem = source.missing([column], what="its key", source=self.input)
            if problem is not None:
                raise StepError(self.name, f"key[{index}]", problem)
        for index, aggregate in enumerate(self.aggregates):
            if aggregate.measurement is None:
                continue
            what = repr(aggregate.text)
            problem = source.missing([aggregate.measurement], what=what, source=self.input)
            if problem is not None:
                raise StepError(self.name, f"aggregates[{index}]", problem)
        columns: dict[str, pl.DataType] = {}
        known = source.columns or {}
        for name in self.key:
            columns[name] = known.get(name, pl.String())
        columns |= {START: TS_TYPE, END: TS_TYPE}
        for aggregate in self.aggregates:
            columns[aggregate.name] = _output_type(aggregate, known)
        columns |= {REVISION: pl.Int64(), FINAL: pl.Boolean(), OP: pl.String()}
        return Shape(OutputKind.RESULTS, columns, self.key, self.window)

    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """The operator for one partition; a roll-up of results when it reads results."""
        operator: WindowOperator = self.window.build(self, event_time.allowed_lateness)
        if source.kind is OutputKind.RESULTS and isinstance(operator, FixedWindowOperator):
            return RollupOperator(operator, upstream_key=source.key)
        return operator


def _output_type(aggregate: Aggregate, known: dict[str, pl.DataType]) -> pl.DataType:
    """The type of an aggregate's output column, as the window's results carry it."""
    if aggregate.function == "count":
        return pl.Int64()
    if aggregate.measurement is None or aggregate.quantile is not None:
        return pl.Float64()
    if aggregate.function in ("mean", "stddev", "variance"):
        return pl.Float64()
    return known.get(aggregate.measurement, pl.Float64())


__all__ = [
    "HoppingWindow",
    "SessionWindow",
    "TumblingWindow",
    "Window",
    "WindowOperator",
    "WindowStep",
]
