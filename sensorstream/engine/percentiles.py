"""Approximate percentiles from log-spaced buckets (the DDSketch idea), as columnar tables.

A value v > 0 falls in bucket ``ceil(log(v) / log(gamma))`` with gamma = (1 + a) / (1 - a);
the bucket's representative value is within a relative error ``a`` of every value in it.
Buckets of a window are rows (key, window, measurement, bucket, count), so merging two
sketches is a group-by sum and memory is bounded by the spread of values, not their number.
The estimate of quantile q is the bucket holding the value of rank floor(q * (n - 1)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
# Magnitudes below this share the zero bucket (their estimate is 0).
_TINY = 1e-9
# A bucket code is sign * _SIGN_STRIDE + index, so one Int64 column holds both.
_SIGN_STRIDE = 10_000_000


def bucket(value: pl.Expr) -> pl.Expr:
    """The bucket code of each value (Int64)."""
    magnitude = value.abs()
    index = (magnitude.log() / _LOG_GAMMA).ceil().cast(pl.Int64)
    sign = pl.when(value > 0).then(1).otherwise(-1)
    return (
        pl.when(magnitude < _TINY).then(pl.lit(0, pl.Int64)).otherwise(sign * _SIGN_STRIDE + index)
    )


def _sign(code: pl.Expr) -> pl.Expr:
    return (code + _SIGN_STRIDE // 2).floordiv(_SIGN_STRIDE)


def representative(code: pl.Expr) -> pl.Expr:
    """The value a bucket stands for, within the relative accuracy of its members."""
    sign = _sign(code)
    index = code - sign * _SIGN_STRIDE
    magnitude = 2 * pl.lit(_GAMMA).pow(index.cast(pl.Float64)) / (_GAMMA + 1)
    return pl.when(sign == 0).then(0.0).otherwise(sign.cast(pl.Float64) * magnitude)


def merge(sketches: Sequence[pl.DataFrame], group: Sequence[str]) -> pl.DataFrame:
    """Merge bucket tables by summing the counts of equal buckets."""
    frames = [s for s in sketches if s.height]
    if not frames:
        return sketches[0]
    return pl.concat(frames).group_by([*group, "measurement", "bucket"]).agg(pl.col("count").sum())


def quantiles(
    sketch: pl.DataFrame,
    group: Sequence[str],
    outputs: Sequence[tuple[str, str, float]],
) -> pl.DataFrame:
    """One row per group with a column per (measurement, output name, quantile)."""
    ordered = sketch.with_columns(representative(pl.col("bucket")).alias("__value")).sort(
        [*group, "measurement", "__value"]
    )
    ordered = ordered.with_columns(
        pl.col("count").cum_sum().over([*group, "measurement"]).alias("__cum"),
        pl.col("count").sum().over([*group, "measurement"]).alias("__n"),
    )
    result: pl.DataFrame | None = None
    for measurement, name, q in outputs:
        picked = (
            ordered.filter(
                (pl.col("measurement") == measurement)
                & (pl.col("__cum") > (q * (pl.col("__n") - 1)).floor())
            )
            .group_by(group, maintain_order=True)
            .agg(pl.col("__value").first().alias(name))
        )
        result = (
            picked
            if result is None
            else result.join(picked, on=list(group), how="full", coalesce=True, nulls_equal=True)
        )
    if result is None:
        msg = "quantiles() needs at least one output"
        raise ValueError(msg)
    return result
