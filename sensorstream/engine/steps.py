"""A step: a declaration that names its input, says what it emits, and builds its operator.

Steps form a graph: each reads a stream (``readings`` by default) or another step's output;
a join reads two (:attr:`Step.inputs`), one of which may be a table. A declaration is a
frozen dataclass (it round-trips through YAML); the operator it builds holds the per-key
state of one partition. The kinds of step (window, derive, rule) are registered in
:data:`sensorstream.engine.plan.STEP_KINDS`.

A step that groups (a window, a rule) records its ``key``. Within one partition every step is
exact; once several workers share a pipeline, each owning some partitions, a step is only
exact if every group lies within one partition: its key must hold the partition key (the
readings are partitioned by ``device_id``). :meth:`sensorstream.engine.plan.EnginePlan.
check_partitioning` holds every step to that rule; a step keyed otherwise (a spike per
district) will need its input repartitioned by its key, which the scale-out brings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sensorstream.engine.operator import Operator
from sensorstream.engine.outputs import Shape
from sensorstream.errors import ConfigError

if TYPE_CHECKING:
    from sensorstream.engine.time import EventTime

READINGS = "readings"


class StepError(ConfigError):
    """A step's declaration does not fit the graph; names the step and the field at fault."""

    def __init__(self, step: str, field: str, message: str) -> None:
        super().__init__(f"step {step!r}, {field}: {message}")
        self.step, self.field, self.message = step, field, message


class Step(ABC):
    """Base of every step declaration; subclasses are frozen dataclasses.

    ``name`` and ``input`` are fields of every subclass; ``key`` is what it groups by (none
    for a step that does not group), a field of the subclasses that group.
    """

    name: str
    input: str
    key: tuple[str, ...]  # what it groups by; () if it keeps no state per group

    def grouping(self, source: Shape) -> tuple[str, ...]:
        """What it groups by when it reads ``source`` (its ``key``, unless it says otherwise)."""
        del source
        return self.key

    @property
    def span(self) -> timedelta:
        """How much event time one of its groups spans (a window's size), for dedup's horizon."""
        return timedelta(0)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every stream, step or table it reads, its main ``input`` first.

        Most steps read one; a join also reads a second stream or a table.
        """
        return (self.input,)

    @abstractmethod
    def output_shape(self, source: Shape) -> Shape:
        """What this step emits when it reads ``source``; StepError if it cannot read it."""

    @abstractmethod
    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """The operator that runs this step for one partition."""

    def output_shape_of(self, sources: Sequence[Shape]) -> Shape:
        """What it emits reading ``sources`` (one shape per name in :attr:`inputs`)."""
        return self.output_shape(sources[0])

    def build_of(self, sources: Sequence[Shape], event_time: EventTime) -> Operator:
        """The operator for one partition, given the shapes of all its inputs."""
        return self.build(sources[0], event_time)
