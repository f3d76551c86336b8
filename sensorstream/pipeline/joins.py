"""Tables and table joins as YAML writes them.

::

    steps:
      - name: doors                      # a changelog stream kept as a table
        input: devices
        table: {key: [device_id], delete_when: "status = 'removed'"}
      - name: events_with_doors          # a stream enriched from a table
        input: events
        join:
          table: doors                   # a table step, or a table under tables:
          on: [device_id]
          mode: as_of                    # or latest
          columns: [district, loc]
          missing: hold                  # pass (nulls), dead_letter, or hold
          hold_for: 30s
          then: dead_letter

The reference tables a pipeline loads from files or PostgreSQL are declared under
``tables:`` (:class:`TableSpec`); their rows reach every partition.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensorstream.durations import Duration
from sensorstream.engine.joins.tables import Missing, Mode, TableJoinStep, TableStep
from sensorstream.engine.steps import READINGS
from sensorstream.readings import DEVICE

_STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableOptions(_Model):
    """What a table step keeps: ``{key: [device_id], delete_when: ..., columns: [...]}``."""

    key: list[str] = [DEVICE]
    delete_when: str | None = None
    columns: list[str] = []


class TableStepSpec(_Model):
    """A changelog stream (announcements, updates, deletions) kept as the latest row per key."""

    name: str = Field(pattern=_STEP_NAME)
    input: str = READINGS
    table: TableOptions = TableOptions()

    def to_step(self) -> TableStep:
        """The engine-side step."""
        return TableStep(
            name=self.name,
            input=self.input,
            key=tuple(self.table.key),
            delete_when=self.table.delete_when,
            columns=tuple(self.table.columns),
        )


class TableJoinOptions(_Model):
    """How a stream is enriched from a table (see the module docstring)."""

    table: str
    on: list[str] = [DEVICE]
    mode: Mode = "latest"
    columns: list[str] = []
    missing: Missing = "pass"
    hold_for: Duration = Field(default=timedelta(0), validate_default=True)
    then: Literal["pass", "dead_letter"] = "pass"

    @model_validator(mode="after")
    def _hold_has_a_time(self) -> TableJoinOptions:
        if self.missing == "hold" and self.hold_for <= timedelta(0):
            msg = "missing: hold waits for the key: give hold_for, e.g. hold_for: 30s"
            raise ValueError(msg)
        if self.missing != "hold" and self.hold_for > timedelta(0):
            msg = "hold_for applies to missing: hold only"
            raise ValueError(msg)
        return self


class TableJoinStepSpec(_Model):
    """A stream joined with a table, latest or as of each record's time."""

    name: str = Field(pattern=_STEP_NAME)
    input: str = READINGS
    join: TableJoinOptions

    def to_step(self) -> TableJoinStep:
        """The engine-side step."""
        options = self.join
        return TableJoinStep(
            name=self.name,
            input=self.input,
            table=options.table,
            on=tuple(options.on),
            mode=options.mode,
            columns=tuple(options.columns),
            missing=options.missing,
            hold_for=options.hold_for,
            then=options.then,
        )
