"""Stream x stream joins: rows of two streams paired by key, within a time bound or a window.

``StreamJoinStep("badge_and_door", "badges", "doors", on=("device_id",),
within=timedelta(seconds=10))`` pairs each badge read with each door event of the same
device at most ten seconds apart; with ``window=TumblingWindow(timedelta(minutes=1))``
instead of ``within``, with each one of the same minute. What it promises (docs/joins.md
says it at length):

- **Each pair once, when its later member arrives.** Each side keeps a buffer; a batch of
  one side is joined with the other side's buffer (one Polars join on the key, then a
  filter on the time difference), then joins its own buffer. A pair's row has the left
  columns, then the right ones (a name the left has too gets ``suffix``: ``ts_right``),
  ``ts`` the later of the two times, and the later of the two rows' watermarks (the one
  its later-arriving member came with, whichever side a round delivers first).
- **Late rows are not joined.** A row is late if its time is behind the watermark before it
  by more than the allowed lateness (in a windowed join: if every window it falls in has
  passed its lateness). Some partners it could have had may be gone by then, so pairing it
  would make the output depend on how the input was batched; it is reported in
  ``OperatorOutput.late`` instead.
- **State is bounded by the bound, not by the stream.** A buffered row is dropped once the
  step's watermark W has W - allowed_lateness > ts + within (a windowed copy once W >=
  window_end + allowed_lateness): no row that is not late can pair with it any more. While
  a round may still bring the other input's rows, W is the previous round's watermark
  (:mod:`.rounds`).
- **how="left"** also emits each left row that paired with nothing, with nulls on the
  right, when it is dropped. It carries the watermark that drops it at the earliest, or
  the watermark before the round that emits it if that is later (so no step downstream
  gets it for a window it already dropped): when the task ends each round that moves the
  watermark with ``on_watermark`` (:mod:`.rounds`), that is the earliest one, whatever
  the batching.

This relies on each row's ``__watermark`` never being below a watermark the step was given
in an earlier round: true of the watermark of the row's own stream, and of the minimum
over the streams. The operator that keeps the buffers is :mod:`.pairs`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, cast

import polars as pl

from sensorstream.engine.joins.pairs import StreamJoinOperator, payload, right_names
from sensorstream.engine.operator import Operator
from sensorstream.engine.outputs import END, START, OutputKind, Shape
from sensorstream.engine.steps import Step, StepError
from sensorstream.engine.windows import HoppingWindow, TumblingWindow
from sensorstream.readings import TS, TS_TYPE

if TYPE_CHECKING:
    from sensorstream.engine.time import EventTime

__all__ = ["JoinHow", "JoinWindow", "StreamJoinOperator", "StreamJoinStep"]

JoinHow = Literal["inner", "left"]
JoinWindow = TumblingWindow | HoppingWindow


@dataclass(frozen=True)
class StreamJoinStep(Step):
    """Pairs rows of two streams with equal ``on`` columns, ``within`` apart or in one window.

    >>> step = StreamJoinStep("pairs", "badges", "doors", ("device_id",), timedelta(seconds=10))
    >>> step.inputs, step.key
    (('badges', 'doors'), ('device_id',))
    """

    name: str
    input: str
    other: str
    on: tuple[str, ...]
    within: timedelta | None = None
    how: JoinHow = "inner"
    window: JoinWindow | None = None
    suffix: str = "_right"
    key: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        declared: object = self.on  # checked as declared: a str would pass as a tuple of letters
        if not isinstance(declared, tuple) or not declared:
            why = "name the key columns both sides share, e.g. [device_id]"
            raise StepError(self.name, "join.on", why)
        for index, column in enumerate(self.on):
            if column == TS or self.on.index(column) != index:
                why = f"{column!r} cannot be a key: a key names other columns than ts, once each"
                raise StepError(self.name, f"join.on[{index}]", why)
        object.__setattr__(self, "key", tuple(self.on))
        if self.how not in ("inner", "left"):
            why = f"how is inner (pairs only) or left (unpaired left rows too), not {self.how!r}"
            raise StepError(self.name, "join.how", why)
        if not self.suffix:
            raise StepError(self.name, "join.suffix", "the suffix must not be empty, e.g. _right")
        if self.window is None:
            if self.within is None:
                why = "say how far apart two rows may be (within: 10s), or join by window"
                raise StepError(self.name, "join.within", why)
            if self.within < timedelta(0):
                raise StepError(self.name, "join.within", f"must not be negative: {self.within}")
        elif self.within is not None:
            why = "a windowed join pairs the rows of one window: declare within or window, not both"
            raise StepError(self.name, "join.within", why)
        elif not isinstance(window := cast(object, self.window), TumblingWindow | HoppingWindow):
            why = f"a windowed join takes a tumbling or hopping window, not {window!r}"
            raise StepError(self.name, "join.window", why)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The left stream, then the right one."""
        return (self.input, self.other)

    @property
    def span(self) -> timedelta:
        """How far apart two paired rows may be."""
        return self.window.size if self.window is not None else self.within or timedelta(0)

    def output_shape(self, source: Shape) -> Shape:
        """Not enough to know: a join's shape needs both sides (:meth:`output_shape_of`)."""
        del source
        raise StepError(self.name, "join.stream", "a join reads two inputs, not one")

    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """Not enough to build: a join needs both sides' shapes (:meth:`build_of`)."""
        del source, event_time
        raise StepError(self.name, "join.stream", "a join reads two inputs, not one")

    def output_shape_of(self, sources: Sequence[Shape]) -> Shape:
        """A stream keyed by the join key: left columns, right columns, the window's bounds.

        StepError if a side is not a stream, lacks a key column, or a name would clash.
        """
        left, right = sources
        for name, shape, where in ((self.input, left, "input"), (self.other, right, "join.stream")):
            if shape.kind is OutputKind.TABLE:
                why = f"{name!r} is a table: join it with join: {{table: {name}}}"
                raise StepError(self.name, where, why)
            if shape.kind is not OutputKind.STREAM:
                why = (
                    f"a stream join reads streams (readings, derive steps over them), and "
                    f"{name!r} emits {shape.kind.value}; compare window results with a relation"
                )
                raise StepError(self.name, where, why)
            for index, column in enumerate(self.on):
                problem = shape.missing([column], what="the join key", source=name)
                if problem is not None:
                    raise StepError(self.name, f"join.on[{index}]", problem)
        if left.columns is None or right.columns is None:
            return Shape(OutputKind.STREAM, None, self.on)
        return Shape(OutputKind.STREAM, self._columns(left.columns, right.columns), self.on)

    def _columns(
        self, left: dict[str, pl.DataType], right: dict[str, pl.DataType]
    ) -> dict[str, pl.DataType]:
        for index, column in enumerate(self.on):
            if left[column] != right[column]:
                why = f"{column!r} is {left[column]} on the left and {right[column]} on the right"
                raise StepError(self.name, f"join.on[{index}]", why)
        columns = {name: left[name] for name in payload(list(left))}
        for name, renamed in right_names(list(columns), list(right), self.on, self.suffix).items():
            if renamed in columns:
                why = f"the right's {name!r} would be {renamed!r}, which is taken: pick a suffix"
                raise StepError(self.name, "join.suffix", why)
            columns[renamed] = right[name]
        if self.window is not None:
            for bound in (START, END):
                if bound in columns:
                    why = f"a windowed join adds {bound!r}, which an input already has"
                    raise StepError(self.name, "join.window", why)
                columns[bound] = TS_TYPE
        return columns

    def build_of(self, sources: Sequence[Shape], event_time: EventTime) -> Operator:
        """The operator for one partition, knowing the right side's columns for unpaired rows."""
        return StreamJoinOperator(self, event_time.allowed_lateness, sources[1].columns)
