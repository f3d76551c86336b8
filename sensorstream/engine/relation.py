"""A relation: two sides' window results compared per key and window (difference, ratio).

``RelationStep("in_out", "avg_1m", "avg_1m", "temperature_mean", ("room",),
left_where="side = 'IN'", right_where="side = 'OUT'")`` compares, per room and minute, the
indoor mean temperature with the outdoor one: ``left``, ``right``, ``difference`` = left -
right and ``ratio`` = left / right (null when right is 0 or null). Both inputs are window
results of one window (they may be one step, told apart by the ``where`` filters, which
are SQL conditions as a derive step's ``where`` is).

Its output is results too, keyed by ``key`` and ``window_start``:

- a row is emitted as soon as both sides of a key and window are there, and again, with
  the next ``revision``, whenever either side changes (a late reading corrected the window
  upstream); if a side is retracted, so is the row (``_op = delete``);
- once the watermark passes ``window_end`` + the allowed lateness, no side can change any
  more: a window only one side has is emitted with nulls for the other (``final``), so
  nothing silently vanishes, and the window's state is dropped. State is bounded by keys x
  windows within the lateness. While a round may still bring the other side's results,
  that watermark is the previous round's; ``on_watermark`` at the end of the round takes
  the round's own (:mod:`sensorstream.engine.joins.rounds`).

A row's ``final`` says both sides it compares are final (closed upstream).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import polars as pl

from sensorstream.engine.derive import parse_expression
from sensorstream.engine.joins.rounds import Rounds
from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import (
    DELETE,
    END,
    FINAL,
    OP,
    OPENED_LATE,
    REVISION,
    START,
    UPSERT,
    WATERMARK,
    OutputKind,
    Shape,
)
from sensorstream.engine.steps import Step, StepError
from sensorstream.engine.time import micros
from sensorstream.engine.windows import SessionWindow
from sensorstream.readings import TS_TYPE

if TYPE_CHECKING:
    from sensorstream.engine.time import EventTime

LEFT, RIGHT, DIFFERENCE, RATIO = "left", "right", "difference", "ratio"
OUTPUTS = (LEFT, RIGHT, DIFFERENCE, RATIO)
# Columns of the state (never emitted): window bounds in microseconds, a side's value, final
# flag and how its window was opened; how many times a window was emitted, and whether its
# latest emission stands (an upsert, not a delete).
_START, _END, _VALUE, _FINAL, _OPENED = "__start", "__end", "__value", "__final", "__opened"
_EMITTED, _SHOWN = "__emitted", "__shown"
_SIDES = ("left", "right")


@dataclass(frozen=True)
class RelationStep(Step):
    """The difference and ratio of ``value`` between two sides, per ``key`` and window.

    >>> step = RelationStep("in_out", "avg_1m", "avg_1m", "temperature_mean", ("room",))
    >>> step.inputs
    ('avg_1m', 'avg_1m')
    """

    name: str
    left: str
    right: str
    value: str
    key: tuple[str, ...]
    left_where: str | None = None
    right_where: str | None = None
    input: str = field(default="", init=False, repr=False, compare=False)  # the left side

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", self.left)
        declared: object = self.key
        if not isinstance(declared, tuple):
            why = "name the columns to compare by, e.g. [room]"
            raise StepError(self.name, "relation.key", why)
        for index, column in enumerate(self.key):
            if column in OUTPUTS:
                why = f"{column!r} is a column the relation adds; rename it upstream"
                raise StepError(self.name, f"relation.key[{index}]", why)
        for side in _SIDES:
            self.condition(side)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The left side, then the right one (the same step twice when they are one)."""
        return (self.left, self.right)

    def condition(self, side: str) -> pl.Expr | None:
        """Which of a side's results it takes (a null counts as false); None: all of them."""
        text = self.left_where if side == "left" else self.right_where
        if text is None:
            return None
        return parse_expression(text, step=self.name, field=f"relation.{side}_where")

    def output_shape(self, source: Shape) -> Shape:
        """Not enough to know: a relation's shape needs both sides (:meth:`output_shape_of`)."""
        del source
        raise StepError(self.name, "relation.right", "a relation reads two inputs, not one")

    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """Not enough to build: a relation needs both sides' shapes (:meth:`build_of`)."""
        del source, event_time
        raise StepError(self.name, "relation.right", "a relation reads two inputs, not one")

    def output_shape_of(self, sources: Sequence[Shape]) -> Shape:
        """Results keyed by ``key`` and window: the sides, their difference and ratio.

        StepError if a side is not window results, the windows differ, or a column is missing.
        """
        for side, name, shape in zip(_SIDES, self.inputs, sources, strict=True):
            self._check_side(side, name, shape)
        left, right = sources
        if left.window is not None and right.window is not None and left.window != right.window:
            why = (
                f"both sides need the same window: {self.left!r} has {left.window}, "
                f"{self.right!r} has {right.window}"
            )
            raise StepError(self.name, "relation.right", why)
        known = left.columns or {}
        columns: dict[str, pl.DataType] = {name: known.get(name, pl.String()) for name in self.key}
        columns |= {START: TS_TYPE, END: TS_TYPE}
        columns |= dict.fromkeys(OUTPUTS, pl.Float64())
        columns |= {REVISION: pl.Int64(), FINAL: pl.Boolean(), OP: pl.String()}
        window = left.window if left.window is not None else right.window
        return Shape(OutputKind.RESULTS, columns, self.key, window)

    def _check_side(self, side: str, name: str, shape: Shape) -> None:
        where = f"relation.{side}"
        if shape.kind is not OutputKind.RESULTS:
            why = f"a relation compares window results, and {name!r} emits {shape.kind.value}"
            raise StepError(self.name, where, why)
        if isinstance(shape.window, SessionWindow):
            why = f"{name!r} has session windows, whose bounds differ per key: compare fixed ones"
            raise StepError(self.name, where, why)
        problem = shape.missing([self.value], what="its value", source=name)
        if problem is not None:
            raise StepError(self.name, "relation.value", problem)
        kind = (shape.columns or {}).get(self.value)
        if kind is not None and not kind.is_numeric():
            why = f"{self.value!r} of {name!r} is {kind}, not a number"
            raise StepError(self.name, "relation.value", why)
        for index, column in enumerate(self.key):
            problem = shape.missing([column], what="its key", source=name)
            if problem is not None:
                raise StepError(self.name, f"relation.key[{index}]", problem)
        condition = self.condition(side)
        filtered: list[str] = []
        if condition is not None:
            filtered = condition.meta.root_names()
            problem = shape.missing(filtered, what=f"{side}_where", source=name)
            if problem is not None:
                raise StepError(self.name, f"{where}_where", problem)
        # Several results of one window in one relation row would make its value arbitrary.
        spread = [c for c in shape.key if c not in self.key and c not in filtered]
        if spread:
            why = (
                f"{name!r} is keyed by {', '.join(shape.key)}, so one {side} side per "
                f"{', '.join(self.key) or 'window'} needs {', '.join(spread)} in the key "
                f"or in {side}_where"
            )
            raise StepError(self.name, "relation.key", why)

    def build_of(self, sources: Sequence[Shape], event_time: EventTime) -> Operator:
        """The operator for one partition."""
        identities = (sources[0].key, sources[1].key)
        return RelationOperator(self, event_time.allowed_lateness, identities)


class RelationOperator(Operator):
    """Each side's latest result per key and window, compared when both are there."""

    watermark_every_round = True

    def __init__(
        self,
        step: RelationStep,
        allowed_lateness: timedelta,
        upstream_keys: tuple[tuple[str, ...], tuple[str, ...]],
    ) -> None:
        self.name = step.name
        self.key = list(step.key)
        self.value = step.value
        self.lateness = micros(allowed_lateness)
        self.conditions = (step.condition("left"), step.condition("right"))
        # A side's result is identified by its own step's key: a correction replaces it.
        self.identities = tuple(
            [*self.key, *(c for c in upstream if c not in self.key)] for upstream in upstream_keys
        )
        self.sides: list[pl.DataFrame | None] = [None, None]
        self.emitted: pl.DataFrame | None = None  # per window: emissions so far, and if shown
        self.rounds = Rounds()

    @property
    def buffered_rows(self) -> int:
        """How many rows the state holds: both sides' results and the windows emitted."""
        frames = (*self.sides, self.emitted)
        return sum(frame.height for frame in frames if frame is not None)

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Changes of the left side (:meth:`process_from` with index 0)."""
        return self.process_from(0, batch, watermark_after)

    def process_from(self, index: int, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Take one side's changed results; emit the windows they change, then expire."""
        if index not in (0, 1):
            msg = f"a relation reads inputs 0 (left) and 1 (right), not input {index}"
            raise ValueError(msg)
        self.rounds.advance(watermark_after)
        end = pl.col(END) if END in batch.columns else pl.lit(None)  # a batch of deletes
        bounds = [
            pl.col(START).cast(pl.Int64).alias(_START),
            end.cast(pl.Int64).alias(_END),
        ]
        rows = batch.with_columns(bounds)
        late = rows.select(
            (pl.col(_END) + self.lateness <= pl.col(WATERMARK)).fill_null(False).alias("late")
        ).to_series()
        accepted = rows.filter(~late) if late.any() else rows
        changed = self._take(index, accepted) if accepted.height else None
        expired = self._expire(self.rounds.settled)  # the other side may still come
        frames = [frame for frame in (changed, expired) if frame is not None and frame.height]
        out = pl.concat(frames, how="vertical_relaxed") if frames else None
        if out is not None:
            out = out.sort([*self.key, START], maintain_order=True, nulls_last=True)
        return OperatorOutput(rows=out, late=late)

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Emit the windows only one side has once they can no longer change; drop them."""
        self.rounds.advance(watermark)
        expired = self._expire(watermark)
        if expired is not None:
            expired = expired.sort([*self.key, START], maintain_order=True, nulls_last=True)
        return OperatorOutput(rows=expired)

    def _take(self, index: int, rows: pl.DataFrame) -> pl.DataFrame | None:
        """Replace one side's results by these changes; return the relation rows that change."""
        identity = [*self.identities[index], _START]
        rows = rows.unique(subset=identity, keep="last", maintain_order=True)
        condition = self.conditions[index]
        taken = pl.col(OP) == UPSERT
        if condition is not None:
            taken = taken & condition.fill_null(False)
        opened = pl.col(OPENED_LATE) if OPENED_LATE in rows.columns else pl.lit(False)
        fresh = rows.filter(taken).select(
            *identity,
            _END,
            pl.col(self.value).cast(pl.Float64).alias(_VALUE),
            pl.col(FINAL).fill_null(False).alias(_FINAL),
            opened.fill_null(False).alias(_OPENED),
        )
        windows = [fresh.select(*self.key, _START, _END)]
        side = self.sides[index]
        if side is not None and side.height:
            touched = rows.select(identity)
            replaced = side.join(touched, on=identity, how="semi", nulls_equal=True)
            windows.append(replaced.select(*self.key, _START, _END))
            side = side.join(touched, on=identity, how="anti", nulls_equal=True)
            fresh = pl.concat([side, fresh], how="vertical_relaxed")
        self.sides[index] = fresh
        affected = pl.concat(windows, how="vertical_relaxed").unique(maintain_order=True)
        return self._compare(affected) if affected.height else None

    def _compare(self, windows: pl.DataFrame) -> pl.DataFrame | None:
        """The relation rows of these windows: upserts where both sides are, else deletes."""
        joined = self._sides_of(windows)
        present = pl.col("__left_present") & pl.col("__right_present")
        due = present | pl.col(_SHOWN)
        changes = joined.filter(due)
        if changes.height == 0:
            return None
        out = self._rows(
            changes, op=pl.when(present).then(pl.lit(UPSERT)).otherwise(pl.lit(DELETE))
        )
        bookkeeping = changes.select(
            *self.key,
            _START,
            _END,
            (pl.col(_EMITTED) + 1).alias(_EMITTED),
            present.alias(_SHOWN),
        )
        emitted = self.emitted
        if emitted is not None and emitted.height:
            kept = emitted.join(bookkeeping, on=[*self.key, _START], how="anti", nulls_equal=True)
            bookkeeping = pl.concat([kept, bookkeeping], how="vertical_relaxed")
        self.emitted = bookkeeping
        return out

    def _sides_of(self, windows: pl.DataFrame) -> pl.DataFrame:
        """Per window: each side's latest value, final and opened flags, and its bookkeeping."""
        group = [*self.key, _START]
        joined = windows
        for name, side in zip(_SIDES, self.sides, strict=True):
            if side is None or side.height == 0:
                joined = joined.with_columns(
                    pl.lit(None, pl.Float64).alias(name),
                    pl.lit(None, pl.Boolean).alias(f"__{name}_final"),
                    pl.lit(None, pl.Boolean).alias(f"__{name}_opened"),
                    pl.lit(False).alias(f"__{name}_present"),
                )
                continue
            latest = (
                side.join(windows.select(group), on=group, how="semi", nulls_equal=True)
                .unique(subset=group, keep="last", maintain_order=True)
                .select(
                    *group,
                    pl.col(_VALUE).alias(name),
                    pl.col(_FINAL).alias(f"__{name}_final"),
                    pl.col(_OPENED).alias(f"__{name}_opened"),
                    pl.lit(True).alias(f"__{name}_present"),
                )
            )
            joined = joined.join(latest, on=group, how="left", nulls_equal=True).with_columns(
                pl.col(f"__{name}_present").fill_null(False)
            )
        if self.emitted is None or self.emitted.height == 0:
            return joined.with_columns(
                pl.lit(0, pl.Int64).alias(_EMITTED), pl.lit(False).alias(_SHOWN)
            )
        bookkeeping = self.emitted.select(*group, _EMITTED, _SHOWN)
        return joined.join(bookkeeping, on=group, how="left", nulls_equal=True).with_columns(
            pl.col(_EMITTED).fill_null(0), pl.col(_SHOWN).fill_null(False)
        )

    def _rows(self, joined: pl.DataFrame, *, op: pl.Expr, expiring: bool = False) -> pl.DataFrame:
        """Relation rows as results carry them, bookkeeping and in-flight flag included."""
        final = pl.all_horizontal(pl.col("__left_final", "__right_final").fill_null(True))
        # A window only one side had comes out when its lateness is over, possibly after
        # later windows of its key: like a window late readings opened, so a rule judging
        # results on close takes it as a correction in any batching.
        opened = pl.any_horizontal(pl.col("__left_opened", "__right_opened").fill_null(False))
        if expiring and self.lateness:
            opened = pl.lit(True)
        right = pl.col(RIGHT)
        return joined.select(
            *self.key,
            pl.col(_START).cast(TS_TYPE).alias(START),
            pl.col(_END).cast(TS_TYPE).alias(END),
            pl.col(LEFT),
            right,
            (pl.col(LEFT) - right).alias(DIFFERENCE),
            pl.when(right == 0).then(None).otherwise(pl.col(LEFT) / right).alias(RATIO),
            pl.col(_EMITTED).alias(REVISION),
            (pl.lit(True) if expiring else final).alias(FINAL),
            op.alias(OP),
            opened.alias(OPENED_LATE),
        )

    def _expire(self, watermark: int) -> pl.DataFrame | None:
        """Emit windows only one side has once their lateness is over; drop all such state."""
        horizon = watermark - self.lateness
        frames = [f for f in (*self.sides, self.emitted) if f is not None and f.height]
        if not frames or not any(_earliest_end(f) <= horizon for f in frames):
            return None
        over = pl.col(_END) <= horizon
        windows = pl.concat(
            [f.filter(over).select(*self.key, _START, _END) for f in self.sides if f is not None],
            how="vertical_relaxed",
        ).unique(maintain_order=True)
        out = None
        if windows.height:
            joined = self._sides_of(windows)
            lonely = joined.filter(pl.col("__left_present") ^ pl.col("__right_present"))
            if lonely.height:
                out = self._rows(lonely, op=pl.lit(UPSERT), expiring=True)
        self.sides = [None if f is None else f.filter(~over) for f in self.sides]
        if self.emitted is not None:
            self.emitted = self.emitted.filter(~over)
        return out

    def snapshot(self) -> OperatorState:
        """Both sides' results and the emission bookkeeping, as frames."""
        frames = {
            name: frame
            for name, frame in (*zip(_SIDES, self.sides, strict=True), ("emitted", self.emitted))
            if frame is not None
        }
        return OperatorState(frames=frames, meta={"rounds": self.rounds.snapshot()})

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.sides = [state.frames.get(name) for name in _SIDES]
        self.emitted = state.frames.get("emitted")
        self.rounds.restore(state.meta.get("rounds"))


def _earliest_end(frame: pl.DataFrame) -> int:
    earliest = frame[_END].min()
    return earliest if isinstance(earliest, int) else 2**62
