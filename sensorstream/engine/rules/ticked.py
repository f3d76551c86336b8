"""A rule judged on processing time: a ``clock: processing`` deadman.

Its observations are not the input's rows but their arrivals: the keys of each batch are
noted, and arrive (as observations) at the processing time of the next tick, which the
task passes in (:meth:`~sensorstream.engine.operator.Operator.on_tick`); the engine reads
no clock of its own. A key breaches once ``timeout`` of processing time has passed since its
last arrival, and its transitions carry processing times. The watermark moves nothing here.

After a restore every key's silence restarts at the first tick
(:meth:`~sensorstream.engine.rules.conditions.Condition.restart`): processing time does
not stand still while a pipeline is down, and the downtime is not the keys' silence (as
with idleness). A key silent when the snapshot was taken stays silent until heard from.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from sensorstream.engine.operator import OperatorOutput, OperatorState
from sensorstream.engine.rules.operator import RuleOperator
from sensorstream.readings import TS, TS_TYPE

ARRIVED = "arrived"  # the snapshot frame of keys heard from since the last tick


class TickedRuleOperator(RuleOperator):
    """A :class:`RuleOperator` whose observations are arrivals, judged on each tick."""

    arrived: pl.DataFrame | None = None  # keys heard from since the last tick
    resumed = False  # restored: every key's silence restarts at the next tick

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Note the batch's keys as heard from; they arrive at the next tick."""
        del watermark_after
        self._arrive(batch)
        return OperatorOutput()

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Event time does not move a processing-time rule."""
        del watermark
        return OperatorOutput()

    def on_tick(self, now_us: int) -> OperatorOutput:
        """The keys heard from arrive now; silences up to now are judged."""
        if self.resumed and self.carry is not None and self.carry.height:
            restarted = self.condition.restart(now_us)
            if restarted:
                self.carry = self.carry.with_columns(restarted)
        self.resumed = False
        records: list[dict[str, Any]] = []
        if self.arrived is not None:
            when = pl.lit(now_us, pl.Int64).cast(TS_TYPE).alias(TS)
            observations = (
                self.arrived.unique(maintain_order=True).select(*self.key, when)
                if self.key
                else pl.select(when)
            )
            self.arrived = None
            records += self._judge(observations, now_us)
        records += self._wake(now_us)
        records += self._clocks(now_us)
        self._forget(now_us)
        return OperatorOutput(rows=self._frame(records))

    def _arrive(self, rows: pl.DataFrame) -> None:
        """Note the keys of ``rows`` as heard from (their time is the next tick's)."""
        if rows.height == 0:
            return
        keys = rows.select(self.key).unique() if self.key else pl.DataFrame({"__any": [True]})
        self.arrived = keys if self.arrived is None else pl.concat([self.arrived, keys])

    def snapshot(self) -> OperatorState:
        """The rule's state, and the keys heard from since the last tick."""
        state = super().snapshot()
        if self.arrived is not None:
            state.frames[ARRIVED] = self.arrived
        return state

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`; silences restart at the next tick."""
        super().restore(state)
        self.arrived = state.frames.get(ARRIVED)
        self.resumed = True
