"""The previous N values of each key, columnar, exact across batch cuts and restores.

A rolling statistic over a key's previous observations (a z-score's window, a spike's
baseline) needs those values, and the first rows of a release need the ones of earlier
releases: each key carries its last N values as a list on its carried row. Here the list
is laid out as rows ahead of the release's values, and each value gets its N predecessors
as lag columns (``__lag1`` is the previous one).

Why lags and not ``rolling_mean``: a rolling sum is updated incrementally, so its last
bits depend on where the computation started, which a batch cut or a restore moves. A sum
of N lag columns depends on those N values only: the same result however the stream was
cut. It costs N columns per release, so it suits windows of tens of observations, not
thousands.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

import polars as pl

from sensorstream.engine.rules.conditions import CARRIED

ROW = "__i"  # a release row's number, to join the statistics back
VALUE = "__v"
_HISTORY_ROW = "__h"


def lag(index: int) -> str:
    """The name of the column holding the ``index``-th previous value."""
    return f"__lag{index}"


def with_lags(
    frame: pl.DataFrame, key: Sequence[str], column: str, history: str, count: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each non-null value of a release with its ``count`` predecessors, and each key's new list.

    ``frame`` is a release sorted by key with carried rows first, numbered in ``__i``;
    ``history`` is the carried list column (oldest first). Returns the values (``__i``,
    ``__v`` and ``__lag1`` ... ``__lag<count>``, null where the key had fewer) and, per
    key, its last ``count`` values as a list in ``history``.
    """
    by = list(key)
    earlier = (
        frame.filter(pl.col(CARRIED))
        .select(*by, ROW, pl.col(history).alias(VALUE))
        .explode(VALUE)
        .with_columns(pl.lit(True).alias(_HISTORY_ROW))
    )
    fresh = frame.filter(~pl.col(CARRIED) & pl.col(column).is_not_null()).select(
        *by, ROW, pl.col(column).cast(pl.Float64).alias(VALUE), pl.lit(False).alias(_HISTORY_ROW)
    )
    sequence = (
        pl.concat([earlier, fresh], how="vertical_relaxed")
        .filter(pl.col(VALUE).is_not_null())
        .sort(ROW, maintain_order=True)
    )
    sequence = sequence.with_columns(_position_in_key(by).alias("__pos"))
    lags = [
        pl.when(pl.col("__pos") >= i).then(pl.col(VALUE).shift(i)).alias(lag(i))
        for i in range(1, count + 1)
    ]
    values = sequence.with_columns(lags).filter(~pl.col(_HISTORY_ROW))
    recent = pl.col(VALUE).tail(count).alias(history)
    kept = (
        sequence.group_by(by, maintain_order=True).agg(recent)
        if by
        else sequence.select(recent.implode())
    )
    return values.drop("__pos", _HISTORY_ROW, *by), kept


def _position_in_key(key: Sequence[str]) -> pl.Expr:
    """Each row's number within its key (0 for its first), in a frame sorted by key."""
    position = pl.int_range(pl.len())
    if not key:
        return position
    segment = (pl.col(key[0]) if len(key) == 1 else pl.struct(list(key))).rle_id()
    begins = (segment != segment.shift(1)).fill_null(True)
    return position - pl.when(begins).then(position).forward_fill()


def total(names: Sequence[str]) -> pl.Expr:
    """The sum of columns, nulls as nothing, added in order (so the model can add alike)."""
    return reduce(lambda acc, part: acc + part, (pl.col(n).fill_null(0.0) for n in names))


def present(names: Sequence[str]) -> pl.Expr:
    """How many of the columns are not null."""
    return reduce(
        lambda acc, part: acc + part, (pl.col(n).is_not_null().cast(pl.Int64) for n in names)
    )


def on_last_rows(
    frame: pl.DataFrame, key: Sequence[str], kept: pl.DataFrame, columns: Sequence[str]
) -> pl.DataFrame:
    """``frame`` with per-key ``columns`` from ``kept`` set on each key's last row only.

    Only a key's last row is carried to the next release, and a list copied onto every row
    would cost its length per row.
    """
    by = list(key)
    frame = frame.drop([c for c in columns if c in frame.columns])
    if by:
        last = frame.group_by(by, maintain_order=True).agg(pl.col(ROW).max())
        last = last.join(kept, on=by, how="left", nulls_equal=True).drop(by)
    else:
        last = frame.select(pl.col(ROW).max()).with_columns(
            kept.select(columns) if kept.height else [pl.lit(None).alias(c) for c in columns]
        )
    return frame.join(last, on=ROW, how="left", maintain_order="left")
