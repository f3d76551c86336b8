"""The operator behind stream joins: both sides' recent rows, each batch paired with the other's.

Each side keeps a buffer, one frame; a batch of one side is joined with the other side's
buffer (one Polars join on the key, and for an interval join a filter on the time
difference), then joins its own. How long a row stays, which rows are late and what a
left join emits for a row that never paired are :mod:`.streams`' rules; the watermark it
drops rows by while a round may still bring the other side's rows is :mod:`.rounds`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from math import ceil
from typing import Literal, Protocol

import polars as pl

from sensorstream.engine.joins.rounds import Rounds
from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import END, ROW, START, WATERMARK
from sensorstream.engine.time import micros
from sensorstream.engine.windows import HoppingWindow, TumblingWindow
from sensorstream.readings import TS, TS_TYPE


class JoinDeclaration(Protocol):
    """What the operator reads of its step's declaration (a :class:`StreamJoinStep`)."""

    @property
    def name(self) -> str: ...  # noqa: D102 - the step's
    @property
    def on(self) -> tuple[str, ...]: ...  # noqa: D102
    @property
    def suffix(self) -> str: ...  # noqa: D102
    @property
    def how(self) -> str: ...  # noqa: D102
    @property
    def within(self) -> timedelta | None: ...  # noqa: D102
    @property
    def window(self) -> TumblingWindow | HoppingWindow | None: ...  # noqa: D102


# Bookkeeping columns of the buffers (never emitted): a left row's number and whether it
# paired (how="left" only), the last watermark a row is kept at, a windowed copy's start.
# Buffered rows keep their own watermark too (``__watermark``).
_SEQ, _MATCHED, _UNTIL, _START = "__seq", "__matched", "__until", "__start"
_RIGHT_SEEN = "__right_watermark"  # a right row's watermark, beside the left's in a pair


def payload(columns: Sequence[str]) -> list[str]:
    """The columns a join carries over: all but the in-flight ones (``__watermark``, ...)."""
    return [name for name in columns if not name.startswith("__")]


def right_names(
    left: Sequence[str], right: Sequence[str], on: Sequence[str], suffix: str
) -> dict[str, str]:
    """How the right side's columns are named in a pair: a name the left has gets ``suffix``.

    The key columns are the left's (they are equal), so they are not among them.

    >>> right_names(["device_id", "ts", "door"], ["device_id", "ts", "badge"], ["device_id"], "_r")
    {'ts': 'ts_r', 'badge': 'badge'}
    """
    taken = set(left)
    return {
        name: f"{name}{suffix}" if name in taken else name
        for name in payload(right)
        if name not in on
    }


class StreamJoinOperator(Operator):
    """Both sides' recent rows, each new batch joined with the other side's (see module doc)."""

    watermark_every_round = True

    def __init__(
        self,
        step: JoinDeclaration,
        allowed_lateness: timedelta,
        right_columns: Mapping[str, pl.DataType] | None = None,
    ) -> None:
        self.name = step.name
        self.on = list(step.on)
        self.suffix = step.suffix
        self.keep_unpaired = step.how == "left"
        self.lateness = micros(allowed_lateness)
        self.within = micros(step.within) if step.within is not None else 0
        window = step.window
        self.size = self.slide = self.offset = 0
        if window is not None:
            self.size = micros(window.size)
            self.slide = micros(window.slide if isinstance(window, HoppingWindow) else window.size)
            self.offset = micros(window.offset)
        self.windowed = window is not None
        self.join_on = [*self.on, _START] if self.windowed else self.on
        # The right's columns, to give unpaired left rows nulls of the right types.
        self.right_columns = dict(right_columns or {})
        self.left: pl.DataFrame | None = None
        self.right: pl.DataFrame | None = None
        self.next_seq = 0
        self.rounds = Rounds()

    @property
    def buffered_rows(self) -> int:
        """How many rows (window copies, in a windowed join) both buffers hold."""
        return sum(frame.height for frame in (self.left, self.right) if frame is not None)

    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """A batch of the left input (:meth:`process_from` with index 0)."""
        return self.process_from(0, batch, watermark_after)

    def process_from(self, index: int, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Pair a batch of one side with the other side's buffer, keep it, drop what expired."""
        if index not in (0, 1):
            msg = f"a join reads inputs 0 (left) and 1 (right), not input {index}"
            raise ValueError(msg)
        self.rounds.advance(watermark_after)
        arrived, late = self._arrivals(batch)
        keyed = pl.all_horizontal([pl.col(name).is_not_null() for name in self.on])
        found: pl.DataFrame | None = None
        if index == 0:
            if self.keep_unpaired:
                start = self.next_seq
                self.next_seq += arrived.height
                arrived = arrived.with_columns(
                    pl.int_range(start, self.next_seq, dtype=pl.Int64).alias(_SEQ),
                    pl.lit(False).alias(_MATCHED),
                )
            else:  # a null key pairs with nothing
                arrived = arrived.filter(keyed)
            if arrived.height and self.right is not None and self.right.height:
                found = self._pairs(arrived, self.right, arriving="left")
                if self.keep_unpaired and found.height:
                    arrived = _mark_paired(arrived, found)
            self.left = _append(self.left, arrived)
        else:
            arrived = arrived.filter(keyed)
            if arrived.height and self.left is not None and self.left.height:
                found = self._pairs(self.left, arrived, arriving="right")
                if self.keep_unpaired and found.height:
                    self.left = _mark_paired(self.left, found)
            self.right = _append(self.right, arrived)
        pairs = self._formatted(found) if found is not None and found.height else None
        unpaired = self._evict(self.rounds.settled)  # the other input may still come
        return OperatorOutput(rows=_ordered(pairs, unpaired), late=late)

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Drop what can no longer pair; under how="left", emit the left rows that never did."""
        self.rounds.advance(watermark)
        return OperatorOutput(rows=_ordered(None, self._evict(watermark)))

    def _arrivals(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
        """The rows that are not late (one per window they fall in), with how long each stays.

        Returns them and the late mask over the batch.
        """
        rows = batch.drop(ROW, strict=False)
        ts, seen = pl.col(TS).cast(pl.Int64), pl.col(WATERMARK)
        if not self.windowed:
            late = rows.select((ts < seen - self.lateness).fill_null(False).alias("late"))
            mask = late.to_series()
            kept = rows.filter(~mask) if mask.any() else rows
            until = ts + (self.within + self.lateness)
            return kept.with_columns(until.alias(_UNTIL)), mask
        last = (ts - self.offset) // self.slide * self.slide + self.offset
        marked = rows.with_columns(last.alias(_START))
        mask = (marked[_START] + (self.size + self.lateness) <= marked[WATERMARK]).fill_null(False)
        mask = mask.alias("late")
        kept = marked.filter(~mask) if mask.any() else marked
        copies = [kept]
        end = pl.col(_START) + self.size
        for i in range(1, ceil(self.size / self.slide)):
            earlier = kept.with_columns((pl.col(_START) - i * self.slide).alias(_START))
            copies.append(earlier.filter((end > ts) & (end + self.lateness > seen)))
        windowed = pl.concat(copies) if len(copies) > 1 else kept
        return windowed.with_columns((end + (self.lateness - 1)).alias(_UNTIL)), mask

    def _pairs(
        self, left: pl.DataFrame, right: pl.DataFrame, *, arriving: Literal["left", "right"]
    ) -> pl.DataFrame:
        """Every pair of these left and right rows, in the order the arriving rows came."""
        names = right_names(payload(left.columns), right.columns, self.on, self.suffix)
        found = left.join(
            right.drop(_UNTIL).rename({**names, WATERMARK: _RIGHT_SEEN}),
            on=self.join_on,
            how="inner",
            maintain_order="left_right" if arriving == "left" else "right_left",
        )
        if self.windowed:
            return found
        apart = (pl.col(TS).cast(pl.Int64) - pl.col(f"{TS}{self.suffix}").cast(pl.Int64)).abs()
        return found.filter(apart <= self.within)

    def _formatted(self, found: pl.DataFrame) -> pl.DataFrame:
        """Pairs as the step emits them: left columns, right columns, bounds, watermark."""
        later = pl.max_horizontal(TS, f"{TS}{self.suffix}").alias(TS)
        columns = [later if name == TS else pl.col(name) for name in payload(found.columns)]
        # The later-arriving member's watermark, whichever side came second in its round.
        seen = pl.max_horizontal(WATERMARK, _RIGHT_SEEN).alias(WATERMARK)
        return found.select(*columns, *self._bounds(), seen)

    def _bounds(self) -> list[pl.Expr]:
        if not self.windowed:
            return []
        return [
            pl.col(_START).cast(TS_TYPE).alias(START),
            (pl.col(_START) + self.size).cast(TS_TYPE).alias(END),
        ]

    def _evict(self, watermark: int) -> pl.DataFrame | None:
        """Drop rows no row to come can pair with; return the unpaired left ones (how="left")."""
        unpaired = None
        if self.left is not None and _expires(self.left, watermark):
            alive = pl.col(_UNTIL) >= watermark
            if self.keep_unpaired:
                unpaired = self.left.filter(~alive & ~pl.col(_MATCHED))
            self.left = self.left.filter(alive)
        if self.right is not None and _expires(self.right, watermark):
            self.right = self.right.filter(pl.col(_UNTIL) >= watermark)
        if unpaired is None or unpaired.height == 0:
            return None
        return self._unpaired(unpaired)

    def _unpaired(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Left rows with nulls for the right's columns, at the watermark that dropped them."""
        right = self.right.schema if self.right is not None else self.right_columns
        names = right_names(payload(rows.columns), list(right) or [TS], self.on, self.suffix)
        nulls = [
            pl.lit(None, right.get(name, TS_TYPE if name == TS else pl.Null())).alias(renamed)
            for name, renamed in names.items()
        ]
        return rows.select(
            *payload(rows.columns),
            *nulls,
            *self._bounds(),
            pl.max_horizontal(pl.col(_UNTIL) + 1, pl.lit(self.rounds.settled)).alias(WATERMARK),
        )

    def snapshot(self) -> OperatorState:
        """Both buffers, and the next left row's number."""
        frames = {
            name: frame
            for name, frame in (("left", self.left), ("right", self.right))
            if frame is not None
        }
        meta = {"next_seq": self.next_seq, "rounds": self.rounds.snapshot()}
        return OperatorState(frames=frames, meta=meta)

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.left = state.frames.get("left")
        self.right = state.frames.get("right")
        self.next_seq = int(state.meta.get("next_seq", 0))
        self.rounds.restore(state.meta.get("rounds"))


def _expires(buffer: pl.DataFrame, watermark: int) -> bool:
    """Whether any buffered row expires at this watermark (one column minimum, usually no)."""
    if buffer.height == 0:
        return False
    earliest = buffer[_UNTIL].min()
    return isinstance(earliest, int) and earliest < watermark


def _mark_paired(left: pl.DataFrame, found: pl.DataFrame) -> pl.DataFrame:
    paired = pl.col(_SEQ).is_in(found[_SEQ].unique().implode())
    return left.with_columns((pl.col(_MATCHED) | paired).alias(_MATCHED))


def _append(buffer: pl.DataFrame | None, rows: pl.DataFrame) -> pl.DataFrame:
    """The buffer with new rows after it; compacted now and then so joins stay quick."""
    if buffer is None:
        return rows
    if rows.height == 0:
        return buffer
    joined = pl.concat([buffer, rows], how="diagonal_relaxed")
    return joined.rechunk() if joined.n_chunks() > 16 else joined


def _ordered(pairs: pl.DataFrame | None, unpaired: pl.DataFrame | None) -> pl.DataFrame | None:
    """One call's rows in watermark order, as rows of a stream arrive."""
    frames = [frame for frame in (pairs, unpaired) if frame is not None and frame.height]
    if not frames:
        return None
    rows = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    return rows if rows[WATERMARK].is_sorted() else rows.sort(WATERMARK, maintain_order=True)
