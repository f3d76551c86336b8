"""Steps as YAML writes them: one model per kind, told apart by the key a step declares.

::

    steps:
      - name: fahrenheit                       # derive: new columns, and/or a row filter
        derive: {temperature_f: temperature * 1.8 + 32}
        where: temperature > -40
      - name: avg_1m                           # window: reads readings by default
        input: fahrenheit
        window: {type: tumbling, size: 1m}
        aggregates: [count, mean(temperature_f)]
      - name: avg_1h                           # a window over another window's results
        input: avg_1m
        window: {type: tumbling, size: 1h}
        aggregates: [max(temperature_f_mean)]

Each model turns into the engine's frozen declaration (``to_step``); the engine checks the
graph (inputs, circles, columns) and its errors come back with the step's YAML line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.derive import DeriveStep
from sensorstream.engine.steps import READINGS, Step, StepError
from sensorstream.engine.windows import WindowStep
from sensorstream.errors import ConfigError
from sensorstream.pipeline.joins import TableJoinStepSpec, TableStepSpec
from sensorstream.pipeline.rules import RuleStepSpec
from sensorstream.pipeline.stream_joins import RelationStepSpec, StreamJoinStepSpec
from sensorstream.pipeline.windows import WindowSpec as WindowSpec  # where step models find it

_AGGREGATE = re.compile(r"^\s*(\w+(?:\.\d+)?)\s*(?:\(\s*([\w.-]*)\s*\))?\s*(?:as\s+(\w+))?\s*$")
_STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_aggregate(text: str) -> Aggregate:
    """``"mean(temperature)"``, ``"p99(latency) as p99"`` or ``"count"`` as an aggregate.

    >>> parse_aggregate("max(temperature) as peak").name
    'peak'
    """
    match = _AGGREGATE.match(text)
    if not match:
        msg = f"cannot read aggregate {text!r}: write function(measurement), e.g. mean(temperature)"
        raise ConfigError(msg)
    function, measurement, alias = match.groups()
    return Aggregate(function, measurement or None, alias)


class WindowStepSpec(_Model):
    """A windowed aggregation over readings, a derive step, or another window's results."""

    name: str = Field(pattern=_STEP_NAME)
    input: str = READINGS
    window: WindowSpec
    key: list[str] = ["device_id"]
    aggregates: list[str]
    emit: Literal["on_close", "updates"] = "on_close"

    @field_validator("aggregates")
    @classmethod
    def _aggregates_parse(cls, value: list[str]) -> list[str]:
        if not value:
            msg = "a step needs at least one aggregate, e.g. [count, mean(temperature)]"
            raise ValueError(msg)
        for text in value:
            try:
                parse_aggregate(text)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("window")
    @classmethod
    def _window_builds(cls, value: WindowSpec) -> WindowSpec:
        value.to_window()
        return value

    def to_step(self) -> WindowStep:
        """The engine-side step."""
        return WindowStep(
            name=self.name,
            window=self.window.to_window(),
            key=tuple(self.key),
            aggregates=tuple(parse_aggregate(a) for a in self.aggregates),
            emit=self.emit,
            input=self.input,
        )


class DeriveStepSpec(_Model):
    """New columns from SQL expressions (``derive``), and a row filter (``where``)."""

    name: str = Field(pattern=_STEP_NAME)
    input: str = READINGS
    derive: dict[str, str] = {}
    where: str | None = None

    def to_step(self) -> DeriveStep:
        """The engine-side step (its expressions are parsed here)."""
        return DeriveStep(
            name=self.name, input=self.input, columns=tuple(self.derive.items()), where=self.where
        )

    @field_validator("derive")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value:
            if not re.match(_STEP_NAME, column):
                msg = (
                    f"column name {column!r}: use letters, digits and _, not starting with a digit"
                )
                raise ValueError(msg)
        return value


def _kind(value: Any) -> str | None:
    """Which kind of step a YAML mapping declares, by the key it holds."""
    if isinstance(value, BaseModel):
        return {
            WindowStepSpec: _WINDOW,
            DeriveStepSpec: _DERIVE,
            RuleStepSpec: _RULE,
            TableStepSpec: _TABLE,
            TableJoinStepSpec: _TABLE_JOIN,
            StreamJoinStepSpec: _STREAM_JOIN,
            RelationStepSpec: _RELATION,
        }.get(type(value))
    if not isinstance(value, dict):
        return None
    if "window" in value:
        return _WINDOW
    if "rule" in value:
        return _RULE
    if "table" in value:
        return _TABLE
    if "relation" in value:
        return _RELATION
    if "join" in value:
        join = value["join"]
        if isinstance(join, dict) and "stream" in join:
            return _STREAM_JOIN
        return _TABLE_JOIN if isinstance(join, dict) and "table" in join else None
    if "derive" in value or "where" in value:
        return _DERIVE
    return None


# Tags no YAML key can be, so that error locations drop them (steps[0].aggregates, not
# steps[0].window.aggregates).
_WINDOW, _DERIVE, _RULE = "window step", "derive step", "rule step"
_TABLE, _TABLE_JOIN = "table step", "table join step"
_STREAM_JOIN, _RELATION = "stream join step", "relation step"
StepSpec = Annotated[
    Annotated[WindowStepSpec, Tag(_WINDOW)]
    | Annotated[DeriveStepSpec, Tag(_DERIVE)]
    | Annotated[RuleStepSpec, Tag(_RULE)]
    | Annotated[TableStepSpec, Tag(_TABLE)]
    | Annotated[TableJoinStepSpec, Tag(_TABLE_JOIN)]
    | Annotated[StreamJoinStepSpec, Tag(_STREAM_JOIN)]
    | Annotated[RelationStepSpec, Tag(_RELATION)],
    Discriminator(
        _kind,
        custom_error_type="step_kind",
        custom_error_message=(
            "a step declares what it does: window (with aggregates), derive (new columns), "
            "where (a filter), rule (a condition to alert on), table (a stream kept as a "
            "table), join (with a table: join: {table: ...}, or a stream: join: {stream: "
            "...}) or relation (two sides of a window compared)"
        ),
    ),
]


def step_location(steps: list[Any], error: StepError) -> tuple[str | int, ...]:
    """Where a StepError's field sits in the YAML: ``("steps", 2, "aggregates", 1)``."""
    index = next((i for i, step in enumerate(steps) if step.name == error.step), None)
    if index is None:
        return ("steps",)
    parts: list[str | int] = ["steps", index]
    for piece in re.split(r"\.", error.field):
        match = re.fullmatch(r"(\w+)\[(\d+)\]", piece)
        if match:
            parts += [match.group(1), int(match.group(2))]
        else:
            parts.append(piece)
    return tuple(parts)


def engine_steps(steps: list[Any]) -> tuple[Step, ...]:
    """The engine's declarations of YAML step models."""
    return tuple(step.to_step() for step in steps)
