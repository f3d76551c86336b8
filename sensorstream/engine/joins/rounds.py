"""Which watermark a step of two inputs may drop state by, while a round may still bring rows.

A partition task runs its steps in rounds (a source batch, a watermark move), and gives a
step of two inputs each input's rows in a call of its own, all with the round's watermark.
Rows of the second call carry watermarks from before the round, so state dropped by the
round's watermark in the first call may be state they needed. Everything that arrives in
a round carries at least the watermark the previous round had: that one is safe to drop
state by (:attr:`Rounds.settled`).

``on_watermark`` drops state by the round's own watermark: the task calls it once a
round's rows are all in, whenever the watermark moved in the round (with rows or
without). Then what a step of two inputs emits when the watermark passes a bound (a left
join's unpaired row, a relation's one-sided window) comes out in the round that passes it,
in any batching.

>>> rounds = Rounds()
>>> for watermark in (10, 10, 25, 25):  # two rounds of two calls each
...     rounds.advance(watermark)
>>> rounds.settled, rounds.current
(10, 25)
"""

from __future__ import annotations

from dataclasses import dataclass

from sensorstream.engine.operator import JSONValue
from sensorstream.engine.watermarks import MIN_WATERMARK


@dataclass
class Rounds:
    """The latest watermark a step was given, and the one before it (microseconds)."""

    current: int = MIN_WATERMARK
    settled: int = MIN_WATERMARK  # the previous round's watermark, or an earlier one

    def advance(self, watermark: int) -> None:
        """Note a call's watermark; a new value means a new round has begun."""
        if watermark > self.current:
            self.settled, self.current = self.current, watermark

    def snapshot(self) -> dict[str, JSONValue]:
        """Both watermarks, for the operator's metadata."""
        return {"current": self.current, "settled": self.settled}

    def restore(self, meta: dict[str, JSONValue] | None) -> None:
        """Continue from :meth:`snapshot` (a missing one: from the start)."""
        meta = meta or {}
        self.current = int(meta.get("current", MIN_WATERMARK))
        self.settled = int(meta.get("settled", MIN_WATERMARK))
