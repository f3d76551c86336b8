"""Per-key expressions over a frame sorted by key: the previous row's value, a forward fill.

A condition's ``level()`` gets its frame sorted by key (a key's rows together, its carried
row first, then event time). Shifting and filling within a key then need no window over
the key (a hash and a gather per group, milliseconds for thousands of keys): comparing
each row's key with the row before it finds where keys begin.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def over_key(expr: pl.Expr, key: Sequence[str]) -> pl.Expr:
    """``expr`` per key (over the whole frame when the rule has no key)."""
    return expr.over(list(key)) if key else expr


def _segment(key: Sequence[str]) -> pl.Expr:
    """A number per run of equal keys (in a frame sorted by key: per key)."""
    return (pl.col(key[0]) if len(key) == 1 else pl.struct(list(key))).rle_id()


def shifted_in_key(expr: pl.Expr, key: Sequence[str]) -> pl.Expr:
    """``expr`` of the key's previous row (null on its first), in a frame sorted by key.

    >>> frame = pl.DataFrame({"k": ["a", "a", "b"], "v": [1, 2, 3]})
    >>> frame.select(shifted_in_key(pl.col("v"), ["k"])).to_series().to_list()
    [None, 1, None]
    """
    if not key:
        return expr.shift(1)
    segment = _segment(key)
    return pl.when(segment == segment.shift(1)).then(expr.shift(1))


def filled_in_key(expr: pl.Expr, key: Sequence[str]) -> pl.Expr:
    """``expr`` filled forward within each key, in a frame sorted by key.

    >>> frame = pl.DataFrame({"k": ["a", "a", "b"], "v": [1, None, None]})
    >>> frame.select(filled_in_key(pl.col("v"), ["k"])).to_series().to_list()
    [1, 1, None]
    """
    if not key:
        return expr.forward_fill()
    segment = _segment(key)
    source = pl.when(expr.is_not_null()).then(segment).forward_fill()
    return pl.when(source == segment).then(expr.forward_fill())
