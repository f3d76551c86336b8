"""Rules: conditions judged in event time, and the alerts they open, change and resolve.

A :class:`RuleStep` reads readings, a derive step or a window's results, judges each
observation of each key with its condition (:mod:`.conditions`), and turns the levels into
alert transitions (:mod:`.lifecycle`), which are events with deterministic ids. How it
meets late data: :mod:`.operator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from sensorstream.engine.operator import Operator
from sensorstream.engine.outputs import START, TRANSITION_SCHEMA, OutputKind, Shape
from sensorstream.engine.rules.anomaly import Anomaly
from sensorstream.engine.rules.conditions import AllOf, Condition, Expression, Threshold
from sensorstream.engine.rules.deadman import Deadman
from sensorstream.engine.rules.intake import Judge
from sensorstream.engine.rules.kinds import CONDITIONS
from sensorstream.engine.rules.lifecycle import AlertPolicy, Flapping
from sensorstream.engine.rules.operator import RuleOperator
from sensorstream.engine.rules.per_key import Range, Rate, Unchanged
from sensorstream.engine.rules.statistics import Ewma, Spike, ZScore
from sensorstream.engine.rules.ticked import TickedRuleOperator
from sensorstream.engine.steps import Step, StepError
from sensorstream.engine.time import micros

if TYPE_CHECKING:
    from sensorstream.engine.time import EventTime

__all__ = [
    "CONDITIONS",
    "AlertPolicy",
    "AllOf",
    "Anomaly",
    "Condition",
    "Deadman",
    "Ewma",
    "Expression",
    "Flapping",
    "Range",
    "Rate",
    "RuleStep",
    "Spike",
    "Threshold",
    "Unchanged",
    "ZScore",
]


@dataclass(frozen=True)
class RuleStep(Step):
    """A rule: which condition, over which input, per which key, and how alerts behave.

    ``key`` None groups by the input's own key (a device for readings, a window step's key
    for its results); ``()`` judges everything together (a fleet-wide rule).
    """

    name: str
    input: str
    condition: Condition
    key: tuple[str, ...] = ()
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    judge: Judge = "on_close"
    by_input_key: bool = True  # key: the input's key (overrides ``key``)

    def grouping(self, source: Shape) -> tuple[str, ...]:
        """What this rule groups by when it reads ``source``."""
        return source.key if self.by_input_key else self.key

    @property
    def inputs(self) -> tuple[str, ...]:
        """What it judges, then any table its condition reads (a range's table)."""
        tables = dict.fromkeys(lookup.table for lookup in self.condition.lookups())
        return (self.input, *tables)

    def output_shape_of(self, sources: Sequence[Shape]) -> Shape:
        """Alert transitions; StepError if a table it reads lacks what the condition needs."""
        for name, table in zip(self.inputs[1:], sources[1:], strict=True):
            if table.kind is not OutputKind.TABLE:
                why = f"{name!r} is no table: name one under tables:, or a table step"
                raise StepError(self.name, "rule", why)
            for lookup in self.condition.lookups():
                if lookup.table != name:
                    continue
                wanted = [column for column, _ in lookup.columns]
                problem = table.missing(wanted, what="its condition", source=name)
                if problem is not None:
                    raise StepError(self.name, "rule", problem)
            if len(table.key) != 1:
                why = f"table {name!r} is keyed by {list(table.key)}: a rule looks up by one key"
                raise StepError(self.name, "rule", why)
        return self.output_shape(sources[0])

    def output_shape(self, source: Shape) -> Shape:
        """Alert transitions: the common columns and the rule's key columns."""
        if source.kind is OutputKind.EVENTS:
            raise StepError(self.name, "input", "a rule reads readings or results, not alerts")
        key = self.grouping(source)
        for index, column in enumerate(key):
            problem = source.missing([column], what="its key", source=self.input)
            if problem is not None:
                raise StepError(self.name, f"key[{index}]", problem)
        problem = source.missing(self.condition.reads(), what="its condition", source=self.input)
        if problem is not None:
            raise StepError(self.name, "rule", problem)
        problem = self.condition.check_key(key)
        if problem is not None:
            raise StepError(self.name, "key", problem)
        known = source.columns or {}
        columns: dict[str, pl.DataType] = dict(TRANSITION_SCHEMA)
        columns |= {name: known.get(name, pl.String()) for name in key}
        return Shape(OutputKind.EVENTS, columns, key)

    def build(self, source: Shape, event_time: EventTime) -> Operator:
        """The operator for one partition."""
        key = self.grouping(source)
        operator = TickedRuleOperator if self.condition.timer == "processing" else RuleOperator
        return operator(
            self.name,
            condition=self.condition,
            key=key,
            policy=self.policy,
            over_results=source.kind is OutputKind.RESULTS,
            identity=[*source.key, START],
            allowed_lateness_us=micros(event_time.allowed_lateness),
            judge=self.judge,
        )
