"""A stream joined with a table, and a changelog stream kept as a table.

A :class:`TableJoinStep` adds a table's columns to each record whose key the table has:
``mode: latest`` takes each key's newest row (a lookup join), ``mode: as_of`` the row valid
at the record's own event time (a temporal join). When the table comes from a stream (a
:class:`TableStep` over announcements), an ``as_of`` record waits until that stream's
watermark has passed its time by the allowed lateness, so an announcement that arrives a
little after the record it precedes still applies, and the result does not depend on how
the input was batched (a table record later than that is refused as late, and so is a
record that is itself later than that: the version valid at its time may be gone).

Records whose key the table lacks follow ``missing``: ``pass`` with nulls,
``dead_letter`` (stored and counted with reason ``missing_reference``), or ``hold`` for up
to ``hold_for`` of event time waiting for the key, then ``then``.

A :class:`TableStep` reads a changelog stream (device announcements, updates, deletions)
and keeps each key's latest row, with its versions in event time; a record matching
``delete_when`` is a tombstone for its key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import polars as pl

from sensorstream.engine.derive import parse_expression
from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import ROW, WATERMARK, OutputKind, Shape
from sensorstream.engine.steps import Step, StepError
from sensorstream.engine.tables import FOUND, TableDecl, VersionedTable
from sensorstream.engine.time import EventTime, micros
from sensorstream.readings import DEVICE, TS

Mode = Literal["latest", "as_of"]
Missing = Literal["pass", "dead_letter", "hold"]
MISSING_REFERENCE = "missing_reference"
_DEADLINE = "__hold_until"


@dataclass(frozen=True)
class TableStep(Step):
    """A changelog stream kept as a table: each key's latest row, versioned by event time."""

    name: str
    input: str
    key: tuple[str, ...] = (DEVICE,)
    delete_when: str | None = None  # SQL condition: such a record deletes its key
    columns: tuple[str, ...] = ()  # value columns to keep; () keeps all but ts

    def _values(self, source: Shape) -> dict[str, pl.DataType] | None:
        if source.columns is None:  # types unknown (an engine test's plan): whatever comes
            return {name: pl.Null() for name in self.columns} if self.columns else None
        names = self.columns or tuple(
            c for c in source.columns if c not in self.key and c != TS and not c.startswith("__")
        )
        return {name: source.columns[name] for name in names}

    def output_shape(self, source: Shape) -> Shape:
        """A table keyed by ``key``, holding the chosen columns; StepError if it cannot."""
        if source.kind is not OutputKind.STREAM:
            why = f"a table step reads a stream of records; {self.input!r} emits {source.kind}"
            raise StepError(self.name, "input", why)
        for field_name, names in (("key", self.key), ("columns", self.columns)):
            problem = source.missing(names, what=f"its {field_name}", source=self.input)
            if problem:
                raise StepError(self.name, field_name, problem)
        values = self._values(source)
        columns = None
        if values is not None:
            known = source.columns or {}
            columns = {**{k: known.get(k, pl.Null()) for k in self.key}, **values}
        return Shape(OutputKind.TABLE, columns, self.key, timed=True)

    def decl(self, source: Shape) -> TableDecl:
        """The table it keeps."""
        columns = source.columns or {}
        values = self._values(source) or {}
        return TableDecl(
            self.name,
            key=self.key,
            columns=values,
            key_types={k: columns.get(k, pl.Null()) for k in self.key},
        )

    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """The operator keeping one partition's table."""
        return TableOperator(self, VersionedTable(self.decl(source)), event_time)


class TableOperator(Operator):
    """Applies a changelog to one partition's :class:`VersionedTable`; emits nothing."""

    def __init__(self, step: TableStep, table: VersionedTable, event_time: EventTime) -> None:
        self.name = step.name
        self.step = step
        self.table = table
        self.lateness_us = micros(event_time.allowed_lateness)
        self._deletes = (
            parse_expression(step.delete_when, step=step.name, field="delete_when")
            if step.delete_when
            else None
        )

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Each record an upsert of its key (or, matching ``delete_when``, a deletion).

        A record further behind its watermark than the allowed lateness is late: a temporal
        join may already have used the version it would have changed, so it is refused
        (and counted) rather than rewriting history unseen.
        """
        del watermark_after
        late = batch[TS].cast(pl.Int64) < batch[WATERMARK] - self.lateness_us
        timely = batch.filter(~late) if late.any() else batch
        times = timely[TS].cast(pl.Int64)
        if self._deletes is None:
            self.table.upsert(timely, times)
        else:
            deleting = timely.select(self._deletes.fill_null(False)).to_series()
            self.table.changelog(timely, times, deleting)
        return OperatorOutput(late=late)

    def snapshot(self) -> OperatorState:
        """The table's versions."""
        return OperatorState(frames=self.table.snapshot())

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.table.restore(state.frames)


@dataclass(frozen=True)
class TableJoinStep(Step):
    """A stream enriched from a table by key; see the module docstring."""

    name: str
    input: str
    table: str
    on: tuple[str, ...] = (DEVICE,)  # the record's columns, matched to the table's key in order
    mode: Mode = "latest"
    columns: tuple[str, ...] = ()  # table columns to add; () adds all its value columns
    missing: Missing = "pass"
    hold_for: timedelta = timedelta(0)
    then: Literal["pass", "dead_letter"] = "pass"
    key: tuple[str, ...] = field(default=(), init=False)  # keeps no state per group

    @property
    def inputs(self) -> tuple[str, ...]:
        """The stream it enriches, then the table."""
        return (self.input, self.table)

    def output_shape(self, source: Shape) -> Shape:
        """Not used: a join has two inputs (see :meth:`output_shape_of`)."""
        raise StepError(self.name, "table", "a table join needs its table's shape")

    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """Not used: a join has two inputs (see :meth:`build_of`)."""
        raise StepError(self.name, "table", "a table join needs its table's shape")

    def _added(self, table: Shape) -> dict[str, pl.DataType] | None:
        if table.columns is None:
            return None
        names = self.columns or tuple(c for c in table.columns if c not in table.key)
        return {name: table.columns[name] for name in names}

    def output_shape_of(self, sources: Sequence[Shape]) -> Shape:
        """The records' columns plus the table's; StepError if they do not fit."""
        source, table = sources
        if source.kind is not OutputKind.STREAM:
            why = f"a table join enriches a stream of records; {self.input!r} emits {source.kind}"
            raise StepError(self.name, "input", why)
        if table.kind is not OutputKind.TABLE:
            why = (
                f"{self.table!r} is no table: name one under tables:, or a table step "
                "(table: {key: [...]}) over a stream"
            )
            raise StepError(self.name, "table", why)
        if len(self.on) != len(table.key):
            why = (
                f"the table is keyed by {list(table.key)}: name as many columns of the "
                f"records (got {list(self.on)})"
            )
            raise StepError(self.name, "on", why)
        problem = source.missing(self.on, what="its on", source=self.input)
        if problem:
            raise StepError(self.name, "on", problem)
        problem = table.missing(self.columns, what="its columns", source=self.table)
        if problem:
            raise StepError(self.name, "columns", problem)
        if self.missing == "hold" and self.hold_for <= timedelta(0):
            why = "missing: hold needs hold_for (how long to wait for the key, e.g. 30s)"
            raise StepError(self.name, "hold_for", why)
        added = self._added(table)
        columns = None
        if source.columns is not None and added is not None:
            clash = sorted(set(added) & set(source.columns))
            if clash:
                why = (
                    f"the records already have {clash}: list the table columns to add "
                    "(columns: [...]) without them, or rename them in a derive step"
                )
                raise StepError(self.name, "columns", why)
            columns = {**source.columns, **added}
        return Shape(OutputKind.STREAM, columns, source.key)

    def build_of(self, sources: Sequence[Shape], event_time: EventTime) -> Operator:
        """The operator for one partition."""
        _, table = sources
        waits = self.mode == "as_of" and table.timed
        return TableJoinOperator(self, event_time, tuple(self._added(table) or ()), waits=waits)


class TableJoinOperator(Operator):
    """Enriches one partition's records from the table it is bound to."""

    def __init__(
        self, step: TableJoinStep, event_time: EventTime, added: tuple[str, ...], *, waits: bool
    ) -> None:
        self.name = step.name
        self.step = step
        self.added = added
        # As of a table from a stream: wait until no version valid at the record's time can
        # still arrive in time (the table's watermark past it by the allowed lateness).
        self.waits = waits
        self.lateness_us = micros(event_time.allowed_lateness)
        self.hold_us = micros(step.hold_for)
        self.table: VersionedTable | None = None
        self.waiting: pl.DataFrame | None = None  # records ahead of the table's watermark
        self.held: pl.DataFrame | None = None  # records whose key is missing, until a deadline
        self.watermark: int | None = None

    def bind_tables(self, tables: Mapping[str, VersionedTable]) -> None:
        """Find the table this join reads."""
        self.table = tables[self.step.table]

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Enrich a batch of records."""
        return self.process_from(0, batch, watermark_after)

    def process_from(self, index: int, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Records (input 0) are enriched; a table change (input 1) may release held ones."""
        if index != 0:
            return self._advance(None, watermark_after)
        if self.step.mode != "as_of":
            return self._advance(batch, watermark_after)
        # A record further behind its watermark than the allowed lateness may ask for a
        # version already evicted (the table keeps what a timely record can ask for): it
        # is late for this join, counted as such, rather than enriched with a wrong row.
        late = batch[TS].cast(pl.Int64) < batch[WATERMARK] - self.lateness_us
        if not late.any():
            return self._advance(batch, watermark_after)
        output = self._advance(batch.filter(~late), watermark_after)
        output.late = late
        return output

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Release records the table's progress or a hold's deadline now decides."""
        return self._advance(None, watermark)

    def _advance(self, batch: pl.DataFrame | None, watermark: int) -> OperatorOutput:
        previous = self.watermark
        self.watermark = watermark
        ready: list[pl.DataFrame] = []
        if batch is not None and batch.height:
            if self.waits:
                self.waiting = _stacked(self.waiting, batch)
            else:
                ready.append(batch)
        if self.waits and self.waiting is not None and self.waiting.height:
            due = self.waiting[TS].cast(pl.Int64) < watermark - self.lateness_us
            if due.any():
                # Released now, each judged downstream by the watermark it arrived behind:
                # a record released from an earlier round is not so old that a window it
                # belongs to has closed meanwhile (it would have been due then).
                released = self.waiting.filter(due).with_columns(
                    pl.lit(None, pl.UInt32).alias(ROW) if ROW in self.waiting.columns else []
                )
                ready.insert(0, released)
                self.waiting = self.waiting.filter(~due)
        outputs: list[pl.DataFrame] = []
        rejected: list[pl.DataFrame] = []
        if self.held is not None and self.held.height:
            retried = self.held.drop(_DEADLINE)
            if previous is not None:
                # A held record comes out later than it arrived: a window that closed while
                # it waited counts it late rather than silently reopening.
                retried = retried.with_columns(
                    pl.max_horizontal(pl.col(WATERMARK), pl.lit(previous, pl.Int64)).alias(
                        WATERMARK
                    )
                )
            deadlines = self.held[_DEADLINE]
            self.held = None
            self._enrich(retried, watermark, outputs, rejected, deadlines=deadlines)
        for frame in ready:
            self._enrich(frame, watermark, outputs, rejected)
        rows = pl.concat(outputs, how="vertical_relaxed") if outputs else None
        refused = pl.concat(rejected, how="vertical_relaxed") if rejected else None
        return OperatorOutput(rows=rows, rejected=refused)

    def _enrich(
        self,
        frame: pl.DataFrame,
        watermark: int,
        outputs: list[pl.DataFrame],
        rejected: list[pl.DataFrame],
        *,
        deadlines: pl.Series | None = None,
    ) -> None:
        if self.table is None:  # pragma: no cover - the task binds every join's table
            msg = f"join {self.name!r} was not bound to its table {self.step.table!r}"
            raise RuntimeError(msg)
        on = list(self.step.on)
        if self.step.mode == "latest":
            joined = self.table.lookup(frame, on)
        else:
            joined = self.table.as_of(frame, on, TS)
        taken = [*frame.columns, *self.added]
        found = joined[FOUND]
        joined = joined.select(taken)
        if self.step.missing == "pass" or found.all():
            outputs.append(joined)  # in arrival order, nulls where a key was missing
            return
        outputs.append(joined.filter(found))
        lacking = joined.filter(~found).drop(self.added)
        policy: Missing = self.step.missing
        if policy == "hold":
            until = (
                deadlines.filter(~found)
                if deadlines is not None
                else lacking[TS].cast(pl.Int64) + self.hold_us
            )
            expired = until < watermark
            still = lacking.filter(~expired).with_columns(
                until.filter(~expired).alias(_DEADLINE),
                pl.lit(None, pl.UInt32).alias(ROW) if ROW in lacking.columns else [],
            )
            if still.height:
                self.held = _stacked(self.held, still)
            lacking = lacking.filter(expired).with_columns(
                pl.lit(watermark, pl.Int64).alias(WATERMARK)
            )
            policy = self.step.then
        if lacking.height == 0:
            return
        if policy == "pass":
            outputs.append(
                lacking.with_columns(
                    pl.lit(None, joined.schema[name]).alias(name) for name in self.added
                )
            )
            return
        reason = (
            f"no row for {', '.join(on)} in table {self.step.table!r}"
            + (f" within {self.step.hold_for}" if self.step.missing == "hold" else "")
            + f" (step {self.name!r})"
        )
        rejected.append(
            lacking.with_columns(
                pl.lit(MISSING_REFERENCE).alias("reason_code"), pl.lit(reason).alias("reason")
            )
        )

    def snapshot(self) -> OperatorState:
        """Records waiting for the table and records held for a missing key."""
        frames = {}
        if self.waiting is not None and self.waiting.height:
            frames["waiting"] = self.waiting
        if self.held is not None and self.held.height:
            frames["held"] = self.held
        meta = {} if self.watermark is None else {"watermark": self.watermark}
        return OperatorState(frames=frames, meta=meta)

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.waiting = state.frames.get("waiting")
        self.held = state.frames.get("held")
        self.watermark = state.meta.get("watermark")


def _stacked(kept: pl.DataFrame | None, more: pl.DataFrame) -> pl.DataFrame:
    if kept is None or kept.height == 0:
        return more
    return pl.concat([kept, more], how="diagonal_relaxed")
