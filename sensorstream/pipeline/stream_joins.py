"""Stream x stream joins and relations as YAML writes them.

::

    steps:
      - name: badge_and_door              # rows of two streams, same device, <= 10 s apart
        input: badges
        join: {stream: doors_events, on: [device_id], within: 10s, how: inner}
      - name: same_minute                 # or in the same window
        input: a
        join: {stream: b, on: [device_id], window: {type: tumbling, size: 1m}}
      - name: in_out                      # two sides' window results, per room and minute
        relation:
          left: avg_1m
          right: avg_1m
          left_where: "side = 'IN'"
          right_where: "side = 'OUT'"
          value: temperature_mean
          key: [room]

A ``join`` naming a ``stream`` is a stream x stream join (:class:`StreamJoinStepSpec`); one
naming a ``table`` joins a reference table (:mod:`sensorstream.pipeline.joins`). The engine's
declarations check the rest, and their errors come back with the YAML line.
"""

from __future__ import annotations

from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sensorstream.durations import Duration
from sensorstream.engine.joins.streams import JoinWindow, StreamJoinStep
from sensorstream.engine.relation import RelationStep
from sensorstream.engine.steps import READINGS
from sensorstream.pipeline.windows import WindowSpec

_STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamJoinSpec(_Model):
    """``{stream: doors, on: [device_id], within: 10s}`` or ``window: {type: tumbling, ...}``.

    ``how: left`` keeps the input's rows that pair with nothing (nulls on the right);
    ``suffix`` renames the right's columns the left has too (``ts`` becomes ``ts_right``).
    """

    stream: str
    on: list[str]
    within: Duration | None = None
    how: Literal["inner", "left"] = "inner"
    window: WindowSpec | None = None
    suffix: str = "_right"

    @field_validator("window")
    @classmethod
    def _window_builds(cls, value: WindowSpec | None) -> WindowSpec | None:
        if value is not None:
            value.to_window()
        return value


class StreamJoinStepSpec(_Model):
    """A stream x stream join: its ``input`` is the left side, ``join.stream`` the right."""

    name: str = Field(pattern=_STEP_NAME)
    input: str = READINGS
    join: StreamJoinSpec

    def to_step(self) -> StreamJoinStep:
        """The engine-side step (StepError, naming ``join.<field>``, if it cannot work)."""
        join = self.join
        # The declaration refuses a session window itself, naming join.window.
        window = cast("JoinWindow | None", None if join.window is None else join.window.to_window())
        return StreamJoinStep(
            name=self.name,
            input=self.input,
            other=join.stream,
            on=tuple(join.on),
            within=join.within,
            how=join.how,
            window=window,
            suffix=join.suffix,
        )


class RelationSpec(_Model):
    """Which results to compare: two steps (or one twice, split by ``where`` filters)."""

    left: str
    right: str
    value: str
    key: list[str] = ["device_id"]
    left_where: str | None = None
    right_where: str | None = None


class RelationStepSpec(_Model):
    """A relation: per key and window, ``left``, ``right``, their difference and ratio."""

    name: str = Field(pattern=_STEP_NAME)
    relation: RelationSpec

    def to_step(self) -> RelationStep:
        """The engine-side step (its filters are parsed here)."""
        relation = self.relation
        return RelationStep(
            name=self.name,
            left=relation.left,
            right=relation.right,
            value=relation.value,
            key=tuple(relation.key),
            left_where=relation.left_where,
            right_where=relation.right_where,
        )
