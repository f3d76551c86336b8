"""Conditions against a key's own recent past: a z-score, an EWMA band, a spike over a baseline.

Each compares an observation with statistics of the key's *previous* observations (never
including itself), so one wild value cannot hide itself:

- :class:`ZScore`: ``(value - mean) / stddev`` of the previous ``window`` values;
- :class:`Ewma`: outside ``band`` standard deviations of an exponentially weighted mean;
- :class:`Spike`: beyond an absolute bound, or ``times`` the mean of the previous
  ``baseline`` values (iot-streaming-analytics' disruption, over a window step's counts or
  shares per group).

What they keep between releases sits on the key's carried row: the last values as a list
(:mod:`.history`), or the EWMA's mean, variance and count. Each is exact across batch cuts
and restores: the same observations give the same bits however they were cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from sensorstream.engine.rules.conditions import CARRIED, OneColumn
from sensorstream.engine.rules.history import (
    ROW,
    VALUE,
    lag,
    on_last_rows,
    present,
    total,
    with_lags,
)
from sensorstream.engine.rules.lifecycle import LEVEL
from sensorstream.engine.rules.within_key import filled_in_key, over_key, shifted_in_key
from sensorstream.errors import ConfigError


def _levels(frame: pl.DataFrame, breach: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with level 1 on the rows ``breach`` (``__i``, ``__breach``) says breach."""
    frame = frame.join(breach, on=ROW, how="left", maintain_order="left")
    level = pl.when(pl.col("__breach").fill_null(False)).then(pl.lit(1, pl.Int8)).otherwise(0)
    computed = pl.when(pl.col(CARRIED)).then(pl.col(LEVEL)).otherwise(level).cast(pl.Int8)
    return frame.with_columns(computed.alias(LEVEL)).drop("__breach")


@dataclass(frozen=True)
class ZScore(OneColumn):
    """``(value - mean) / stddev`` over the key's previous ``window`` values, beyond a bound.

    ``above: 3`` breaches at a z-score over 3, ``below: -3`` under -3 (either or both).
    It is judged once the key has ``min_observations`` previous values (at least 2: a
    standard deviation needs two); a window of equal values (stddev 0) is not judged.
    The standard deviation is the sample one (n - 1).

    >>> ZScore("x", window=30, above=3).describe(1, 9.0)
    'x 9: z-score beyond 3 over its previous 30 values'
    """

    column: str
    window: int = 30
    above: float | None = None
    below: float | None = None
    min_observations: int = 5
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.above is None and self.below is None:
            msg = "a zscore needs above: 3 and/or below: -3"
            raise ConfigError(msg)
        if (self.above is not None and self.above <= 0) or (
            self.below is not None and self.below >= 0
        ):
            msg = (
                "a zscore's above must be positive and below negative, "
                f"got {self.above}, {self.below}"
            )
            raise ConfigError(msg)
        if not 2 <= self.min_observations <= self.window:
            msg = (
                f"min_observations must be between 2 and the window ({self.window}), "
                f"got {self.min_observations}"
            )
            raise ConfigError(msg)

    def carry(self) -> dict[str, pl.DataType]:
        """The key's last ``window`` values."""
        return {"__zscore_recent": pl.List(pl.Float64())}

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 where the z-score against the previous values is beyond a bound."""
        frame = frame.with_row_index(ROW)
        values, kept = with_lags(frame, key, self.column, "__zscore_recent", self.window)
        names = [lag(i) for i in range(1, self.window + 1)]
        count = present(names)
        mean = total(names) / count
        values = values.with_columns(count.alias("__n"), mean.alias("__mean"))
        deviations = [
            ((pl.col(n) - pl.col("__mean")) * (pl.col(n) - pl.col("__mean"))).alias(n)
            for n in names
        ]
        values = values.with_columns(deviations)
        std = (total(names) / (pl.col("__n") - 1)).sqrt()
        z = (pl.col(VALUE) - pl.col("__mean")) / std
        beyond = pl.lit(False)
        if self.above is not None:
            beyond = beyond | (z > self.above)
        if self.below is not None:
            beyond = beyond | (z < self.below)
        judged = (pl.col("__n") >= self.min_observations) & (std > 0) & beyond
        breach = values.select(ROW, judged.alias("__breach"))
        frame = on_last_rows(_levels(frame, breach), key, kept, ["__zscore_recent"])
        return frame.drop(ROW)

    def describe(self, level: int, value: float | None) -> str:
        """Whether the value stands out of its window."""
        shown = "null" if value is None else f"{value:g}"
        bounds = " or ".join(f"{b:g}" for b in (self.above, self.below) if b is not None)
        if level == 0:
            return f"{self.column} {shown}: z-score back within {bounds}"
        return (
            f"{self.column} {shown}: z-score beyond {bounds} over its previous {self.window} values"
        )


_MEAN, _VARIANCE, _COUNT = "__ewma_mean", "__ewma_variance", "__ewma_count"


@dataclass(frozen=True)
class Ewma(OneColumn):
    """Outside ``band`` standard deviations of the key's exponentially weighted mean.

    The mean follows ``mean += alpha * (value - mean)`` (Polars' ``ewm_mean`` with
    ``adjust=False``), the variance ``var = (1 - alpha) * (var + alpha * d**2)`` with ``d``
    the value's distance from the previous mean: an EW mean of ``(1 - alpha) * d**2``. A
    value is judged against the mean and variance *before* it, once the key has
    ``min_observations`` previous values and a variance above 0. Each release continues
    both recursions from the carried mean and variance, so a cut changes no bit.

    >>> Ewma("x", alpha=0.1, band=3).describe(1, 9.0)
    'x 9: outside 3 standard deviations of its EWMA'
    """

    column: str
    alpha: float
    band: float
    min_observations: int = 5
    severity: str = "warning"

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            msg = f"alpha must be in (0, 1], got {self.alpha}"
            raise ConfigError(msg)
        if self.band <= 0:
            msg = f"band must be positive (standard deviations), got {self.band}"
            raise ConfigError(msg)
        if self.min_observations < 2:
            msg = f"min_observations must be at least 2, got {self.min_observations}"
            raise ConfigError(msg)

    def carry(self) -> dict[str, pl.DataType]:
        """The mean, variance and count after the key's last value."""
        return {_MEAN: pl.Float64(), _VARIANCE: pl.Float64(), _COUNT: pl.Int64()}

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 where the value lies outside the band of the mean before it."""
        carried = pl.col(CARRIED)
        frame = frame.with_row_index(ROW)
        value = pl.col(self.column).cast(pl.Float64)
        taken = frame.filter(
            (carried & pl.col(_MEAN).is_not_null()) | (~carried & value.is_not_null())
        )
        seeded = pl.when(carried).then(pl.col(_MEAN)).otherwise(value)
        mean = over_key(seeded.ewm_mean(alpha=self.alpha, adjust=False), key)
        count = pl.when(carried).then(pl.col(_COUNT)).otherwise(1)
        taken = taken.with_columns(mean.alias(_MEAN), over_key(count.cum_sum(), key).alias(_COUNT))
        before = shifted_in_key(pl.col(_MEAN), key)
        distance = value - before
        spread = (
            pl.when(carried)
            .then(pl.col(_VARIANCE))
            .when(before.is_null())
            .then(0.0)
            .otherwise((1 - self.alpha) * (distance * distance))
        )
        variance = over_key(spread.ewm_mean(alpha=self.alpha, adjust=False), key)
        taken = taken.with_columns(distance.alias("__distance"), variance.alias(_VARIANCE))
        std = shifted_in_key(pl.col(_VARIANCE), key).sqrt()
        judged = (
            ~carried
            & (pl.col(_COUNT) - 1 >= self.min_observations)
            & (std > 0)
            & (pl.col("__distance").abs() > self.band * std)
        )
        breach = taken.select(ROW, judged.alias("__breach"))
        frame = _levels(frame, breach)
        kept = taken.select(ROW, _MEAN, _VARIANCE, _COUNT)
        return fill_forward(frame.drop(_MEAN, _VARIANCE, _COUNT), kept, key).drop(ROW)

    def describe(self, level: int, value: float | None) -> str:
        """Whether the value stands out of its band."""
        shown = "null" if value is None else f"{value:g}"
        if level == 0:
            return f"{self.column} {shown}: back within {self.band:g} standard deviations"
        return f"{self.column} {shown}: outside {self.band:g} standard deviations of its EWMA"


def fill_forward(frame: pl.DataFrame, kept: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    """``frame`` with ``kept``'s columns joined on ``__i``, carried forward over rows without."""
    names = [c for c in kept.columns if c != ROW]
    frame = frame.join(kept, on=ROW, how="left", maintain_order="left")
    return frame.with_columns(filled_in_key(pl.col(n), key).alias(n) for n in names)


_RECENT = "__spike_recent"


@dataclass(frozen=True)
class Spike(OneColumn):
    """Beyond ``above``, or beyond ``times`` the key's baseline (YAML ``times_baseline``).

    The baseline is the mean of the key's previous ``baseline`` values, excluding the
    current one; it exists once the key has that many. A baseline of 0 judges only the
    absolute bound (any count is "infinitely" many times nothing). Meant for a window
    step's counts or shares per group (a district): ``spike: rejected_share``.

    >>> Spike("rejected_share", above=0.5, times=3, baseline=10).describe(1, 0.6)
    'rejected_share 0.6: beyond 0.5 or 3 x its baseline of 10'
    """

    column: str
    above: float | None = None
    times: float | None = None
    baseline: int = 10
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.above is None and self.times is None:
            msg = "a spike needs above: X and/or times_baseline: K"
            raise ConfigError(msg)
        if self.times is not None and self.times <= 0:
            msg = f"times_baseline must be positive, got {self.times}"
            raise ConfigError(msg)
        if self.baseline < 1:
            msg = f"baseline must be at least 1 observation, got {self.baseline}"
            raise ConfigError(msg)

    def carry(self) -> dict[str, pl.DataType]:
        """The key's last ``baseline`` values (only with a relative bound)."""
        return {_RECENT: pl.List(pl.Float64())} if self.times is not None else {}

    def candidates(self) -> pl.Expr | None:
        """Rows past the absolute bound; every row when the baseline must be kept."""
        if self.times is not None or self.above is None:
            return None
        return pl.col(self.column) > self.above

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 where the value is beyond the absolute bound or the relative one."""
        frame = frame.with_row_index(ROW)
        value = pl.col(self.column).cast(pl.Float64)
        kept: pl.DataFrame | None = None
        if self.times is None:
            values = frame.filter(~pl.col(CARRIED)).select(ROW, value.alias(VALUE))
            beyond = pl.col(VALUE) > (self.above if self.above is not None else float("inf"))
        else:
            values, kept = with_lags(frame, key, self.column, _RECENT, self.baseline)
            names = [lag(i) for i in range(1, self.baseline + 1)]
            # value > times * (sum / n), as value * n > times * sum: no division, whose
            # rounding (Polars may multiply by 1/n) would decide ties.
            summed = total(names)
            relative = (present(names) == self.baseline) & (summed > 0)
            beyond = relative & (pl.col(VALUE) * self.baseline > self.times * summed)
            if self.above is not None:
                beyond = beyond | (pl.col(VALUE) > self.above)
        breach = values.select(ROW, beyond.fill_null(False).alias("__breach"))
        frame = _levels(frame, breach)
        if kept is not None:
            frame = on_last_rows(frame, key, kept, [_RECENT])
        return frame.drop(ROW)

    def describe(self, level: int, value: float | None) -> str:
        """Which bounds it is judged by."""
        shown = "null" if value is None else f"{value:g}"
        bounds = [f"{self.above:g}"] if self.above is not None else []
        if self.times is not None:
            bounds.append(f"{self.times:g} x its baseline of {self.baseline}")
        if level == 0:
            return f"{self.column} {shown}: back within {' and '.join(bounds)}"
        return f"{self.column} {shown}: beyond {' or '.join(bounds)}"
