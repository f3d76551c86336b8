"""What the engine runs: the reading columns, the steps, the event-time and dedup policies.

:data:`STEP_KINDS` is the one registry of step declarations; the pipeline's YAML names a
step's kind by the key it declares (``window:``, ``derive:``, ``rule:``), and the contract
suite runs every registered kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property

import polars as pl

from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.graph import Graph
from sensorstream.engine.joins.streams import StreamJoinStep
from sensorstream.engine.joins.tables import TableJoinStep, TableStep
from sensorstream.engine.outputs import OutputKind, Shape
from sensorstream.engine.relation import RelationStep
from sensorstream.engine.rules import RuleStep
from sensorstream.engine.steps import READINGS, Step, StepError
from sensorstream.engine.tables import TableDecl
from sensorstream.engine.time import EventTime as EventTime  # where steps find it
from sensorstream.engine.windows import WindowStep
from sensorstream.readings import DEVICE, TS, TS_TYPE

STEP_KINDS: dict[str, type[Step]] = {
    "window": WindowStep,
    "derive": DeriveStep,
    "rule": RuleStep,
    "table": TableStep,
    "table_join": TableJoinStep,
    "stream_join": StreamJoinStep,
    "relation": RelationStep,
}
# Readings reach a partition by device: a step keyed by something else needs repartitioning.
PARTITION_KEY = (DEVICE,)


@dataclass(frozen=True)
class Dedup:
    """Which repeats to drop: ``exact`` (same device, time and values) or ``message_id``."""

    enabled: bool = True
    by: str = "exact"
    horizon: timedelta | None = None  # default: out_of_orderness + lateness + longest span


@dataclass(frozen=True)
class StreamDecl:
    """One input stream: its name, measurement columns and canonical schema.

    ``event_time`` and ``dedup`` are None where the stream follows the pipeline's.
    """

    name: str
    measurements: tuple[str, ...]
    columns: Mapping[str, pl.DataType] | None = field(default=None, compare=False)
    event_time: EventTime | None = None
    dedup: Dedup | None = None


@dataclass(frozen=True)
class EnginePlan:
    """Everything the engine needs to know about a pipeline, free of any I/O.

    ``measurements`` and ``columns`` describe the ``readings`` stream; ``streams`` declares
    further named streams and ``tables`` the reference tables joins read. Without
    ``columns`` (engine tests) step declarations are not checked against the columns.
    A plan whose ``measurements`` are empty has no ``readings`` stream, only ``streams``.
    """

    measurements: tuple[str, ...]
    steps: tuple[Step, ...] = ()
    event_time: EventTime = field(default_factory=EventTime)
    dedup: Dedup = Dedup()
    columns: Mapping[str, pl.DataType] | None = field(default=None, compare=False)
    streams: tuple[StreamDecl, ...] = ()
    tables: tuple[TableDecl, ...] = ()

    @cached_property
    def inputs(self) -> tuple[StreamDecl, ...]:
        """Every input stream, ``readings`` first when the plan has it."""
        default = (
            (StreamDecl(READINGS, self.measurements, self.columns),) if self.measurements else ()
        )
        return (*default, *self.streams)

    def event_time_of(self, stream: str) -> EventTime:
        """The event-time policy of one stream."""
        decl = next(s for s in self.inputs if s.name == stream)
        return decl.event_time or self.event_time

    @cached_property
    def graph(self) -> Graph:
        """The steps checked and ordered (StepError for one that does not fit)."""
        sources: dict[str, Shape] = {}
        for stream in self.inputs:
            columns = None
            if stream.columns is not None:
                columns = {name: dtype for name, dtype in stream.columns.items()}
                columns.setdefault(DEVICE, pl.String())
                columns.setdefault(TS, TS_TYPE)
            sources[stream.name] = Shape(OutputKind.STREAM, columns, PARTITION_KEY)
        for table in self.tables:
            sources[table.name] = Shape(OutputKind.TABLE, dict(table.schema), table.key)
        return Graph.of(self.steps, sources)

    @property
    def windows(self) -> tuple[WindowStep, ...]:
        """The window steps, in declaration order."""
        return tuple(step for step in self.steps if isinstance(step, WindowStep))

    def dedup_horizon(self) -> timedelta:
        """How far back repeats are recognised."""
        if self.dedup.horizon is not None:
            return self.dedup.horizon
        spans = [step.span for step in self.steps] or [timedelta(0)]
        return self.event_time.out_of_orderness + self.event_time.allowed_lateness + max(spans)

    def check_partitioning(self, partitions: int | Mapping[str, int]) -> None:
        """Refuse a step that could not be exact when its input comes in several partitions.

        ``partitions`` is each stream's partition count (one count: every stream's). Records
        are partitioned by device; a step whose groups could span partitions (keyed by a
        district, or by nothing) would need its input repartitioned by its key first. A step
        reading two streams needs them partitioned alike and joined on the partition key,
        so that both sides of every key meet in one partition; a reference table reaches
        every partition whole (it is replicated), so it needs nothing.
        """
        counts = (
            dict.fromkeys((s.name for s in self.inputs), partitions)
            if isinstance(partitions, int)
            else dict(partitions)
        )
        graph = self.graph
        for step in graph.order:
            streams = sorted(graph.streams_of(step.name))
            seen = {name: counts.get(name, 1) for name in streams}
            most = max(seen.values(), default=1)
            if len(set(seen.values())) > 1:
                described = ", ".join(f"{name} in {n}" for name, n in seen.items())
                msg = (
                    f"it reads streams partitioned differently ({described}): a join needs "
                    "both sides in the same number of partitions, by the same key, or its "
                    "table declared under tables: (replicated to every partition)"
                )
                raise StepError(step.name, "input", msg)
            if most <= 1:
                continue
            self._check_step_partitioning(step, most)

    def _check_step_partitioning(self, step: Step, partitions: int) -> None:
        if isinstance(step, TableJoinStep) and self.graph.streams_of(step.table):
            table_key = self.graph.outputs[step.table].key
            if tuple(step.on) != PARTITION_KEY or table_key != PARTITION_KEY:
                msg = (
                    f"the streams come in {partitions} partitions (by "
                    f"{', '.join(PARTITION_KEY)}) and the join matches on {list(step.on)}: a "
                    f"table kept from a stream must be keyed and joined by "
                    f"{', '.join(PARTITION_KEY)}, or be a reference table under tables:"
                )
                raise StepError(step.name, "on", msg)
            return
        key = step.grouping(self.graph.inputs[step.name])
        if not key and not isinstance(step, (DeriveStep, TableJoinStep)):
            why = "it groups everything together, which spans partitions"
        elif key and not set(PARTITION_KEY) <= set(key):
            why = f"it groups by {list(key)}, and groups may span partitions"
        else:
            return
        msg = (
            f"the input comes in {partitions} partitions (by {', '.join(PARTITION_KEY)}) "
            f"and {why}: key it by {', '.join(PARTITION_KEY)} too, or read one partition "
            "(repartitioning by other keys comes with the scale-out)"
        )
        raise StepError(step.name, "key", msg)
