"""A brute-force model of the stream x stream join: every pair, one event at a time, no Polars.

It reads the same declaration as the engine (``StreamJoinStep``) but none of its logic:
each side's rows are judged against their own stream's watermark before them (the largest
time seen on that side less the out-of-orderness), and the join is every pair of rows that
are not late, with equal keys and times at most ``within`` apart (a windowed join: every
window both fall in and neither was too late for). ``how="left"`` adds each left row (or
window copy) that is in no pair. The property tests compare it with the operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sensorstream.engine.joins.streams import StreamJoinStep
from sensorstream.engine.windows import HoppingWindow

Pair = tuple[int, int | None, int | None]  # left id, right id (None: unpaired), window start


def micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


@dataclass(frozen=True)
class Row:
    """One row of one side: its id, key, time (microseconds) and watermark before it."""

    id: int
    key: str
    ts: int
    watermark: int | None  # None: nothing came before it on its side


def watermarked(rows: Sequence[tuple[int, str, int]], out_of_orderness: int) -> list[Row]:
    """The rows of one side in arrival order, each with its stream's watermark before it."""
    latest: int | None = None
    out: list[Row] = []
    for id_, key, ts in rows:
        out.append(Row(id_, key, ts, None if latest is None else latest - out_of_orderness))
        latest = ts if latest is None else max(latest, ts)
    return out


@dataclass(frozen=True)
class Reference:
    """The join of two sides' rows under one declaration and allowed lateness."""

    step: StreamJoinStep
    lateness: int

    def windows(self, row: Row) -> list[int]:
        """The starts of the windows a row falls in and is not too late for."""
        window = self.step.window
        assert window is not None
        size, offset = micros(window.size), micros(window.offset)
        slide = micros(window.slide) if isinstance(window, HoppingWindow) else size
        starts = []
        start = (row.ts - offset) // slide * slide + offset
        while start + size > row.ts:
            if row.watermark is None or start + size + self.lateness > row.watermark:
                starts.append(start)
            start -= slide
        return starts

    def late(self, row: Row) -> bool:
        if self.step.window is not None:
            return not self.windows(row)
        return row.watermark is not None and row.ts < row.watermark - self.lateness

    def pairs(self, left: Sequence[Row], right: Sequence[Row]) -> list[Pair]:
        """Every pair, sorted; with how="left", unpaired left rows (copies) too."""
        found: list[Pair] = []
        kept_left = [row for row in left if not self.late(row)]
        kept_right = [row for row in right if not self.late(row)]
        within = micros(self.step.within or timedelta(0))
        for lrow in kept_left:
            copies: list[int | None] = (
                list(self.windows(lrow)) if self.step.window is not None else [None]
            )
            for start in copies:
                partners = [
                    rrow.id
                    for rrow in kept_right
                    if rrow.key == lrow.key
                    and (
                        abs(lrow.ts - rrow.ts) <= within
                        if start is None
                        else start in self.windows(rrow)
                    )
                ]
                found += [(lrow.id, partner, start) for partner in partners]
                if not partners and self.step.how == "left":
                    found.append((lrow.id, None, start))
        return sorted(found, key=repr)
