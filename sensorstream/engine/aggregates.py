"""Mergeable window aggregates: partial state per (key, window), merged batch by batch.

Each aggregate is declared as ``Aggregate("mean", "temperature")``. The engine keeps, per
window, the partial columns the declared aggregates need (count, sum, min, max, first/last
with their timestamps, mean and M2 for the variance) and merges a batch's partials into the
state with one group-by, so the cost is per batch and per group, never per reading.
Percentiles use a log-bucket sketch kept in a separate long table (see ``percentiles``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from sensorstream.engine import percentiles
from sensorstream.errors import ConfigError

SIMPLE_FUNCTIONS = (
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "first",
    "last",
    "stddev",
    "variance",
)
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
COUNT = "__count"
TS = "ts"


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of one measurement over a window, e.g. ``Aggregate("p99", "latency")``.

    ``count`` without a measurement counts readings; with one it counts non-null values.
    Variance and stddev are the sample ones (n - 1), null below two values.

    >>> Aggregate("mean", "temperature").name
    'temperature_mean'
    """

    function: str
    measurement: str | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if self.function not in SIMPLE_FUNCTIONS and not _PERCENTILE.match(self.function):
            allowed = ", ".join(SIMPLE_FUNCTIONS)
            msg = f"unknown aggregate {self.function!r}; allowed: {allowed}, or pNN (p50, p99.9)"
            raise ConfigError(msg)
        if self.measurement is None and self.function != "count":
            msg = f"aggregate {self.function!r} needs a measurement"
            raise ConfigError(msg)

    @property
    def name(self) -> str:
        """The output column name."""
        if self.alias:
            return self.alias
        return self.function if self.measurement is None else f"{self.measurement}_{self.function}"

    @property
    def text(self) -> str:
        """The aggregate as a pipeline writes it: ``mean(temperature)``, ``count as n``."""
        written = (
            self.function if self.measurement is None else f"{self.function}({self.measurement})"
        )
        return f"{written} as {self.alias}" if self.alias else written

    @property
    def quantile(self) -> float | None:
        """The quantile in 0..1 for a percentile aggregate, else None."""
        match = _PERCENTILE.match(self.function)
        return float(match.group(1)) / 100 if match else None


def _needs(aggregates: Sequence[Aggregate]) -> dict[str, set[str]]:
    """Which partial columns each measurement needs."""
    needs: dict[str, set[str]] = {}
    for agg in aggregates:
        if agg.measurement is None:
            continue
        parts = needs.setdefault(agg.measurement, set())
        fn = "percentile" if agg.quantile is not None else agg.function
        parts.update(
            {
                "count": {"n"},
                "sum": {"n", "sum"},
                "mean": {"n", "sum"},
                "min": {"min"},
                "max": {"max"},
                "first": {"first"},
                "last": {"last"},
                "stddev": {"n", "mean", "m2"},
                "variance": {"n", "mean", "m2"},
                "percentile": {"n", "min", "max"},  # min/max bound the estimate
            }[fn]
        )
    return needs


def partial_column(measurement: str, part: str) -> str:
    """The name of one partial column of a measurement, e.g. ``__temperature__sum``."""
    return f"__{measurement}__{part}"


@dataclass(frozen=True)
class AggregatePlan:
    """The partial columns behind a list of aggregates, and how to build, merge and finish them."""

    aggregates: tuple[Aggregate, ...]

    @property
    def percentile_measurements(self) -> tuple[str, ...]:
        """Measurements with at least one percentile aggregate, each once."""
        seen = dict.fromkeys(
            a.measurement for a in self.aggregates if a.quantile is not None and a.measurement
        )
        return tuple(m for m in seen if m)

    def measurements(self) -> set[str]:
        """Every measurement an aggregate reads."""
        return {a.measurement for a in self.aggregates if a.measurement}

    def partial_exprs(self) -> list[pl.Expr]:
        """Expressions that reduce raw readings (sorted by ts) to partials, inside a group-by."""
        exprs: list[pl.Expr] = [pl.len().cast(pl.Int64).alias(COUNT)]
        for m, parts in _needs(self.aggregates).items():
            value = pl.col(m)
            present = value.is_not_null()
            if "n" in parts:
                exprs.append(value.count().cast(pl.Int64).alias(partial_column(m, "n")))
            if "sum" in parts:
                exprs.append(value.sum().alias(partial_column(m, "sum")))
            if "min" in parts:
                exprs.append(value.min().alias(partial_column(m, "min")))
            if "max" in parts:
                exprs.append(value.max().alias(partial_column(m, "max")))
            if "mean" in parts:
                exprs.append(value.mean().alias(partial_column(m, "mean")))
                exprs.append((value.var(ddof=0) * value.count()).alias(partial_column(m, "m2")))
            if "first" in parts:
                exprs.append(value.drop_nulls().first().alias(partial_column(m, "first")))
                exprs.append(
                    pl.col(TS).filter(present).first().alias(partial_column(m, "first_ts"))
                )
            if "last" in parts:
                exprs.append(value.drop_nulls().last().alias(partial_column(m, "last")))
                exprs.append(pl.col(TS).filter(present).last().alias(partial_column(m, "last_ts")))
        return exprs

    def merge_exprs(self) -> list[pl.Expr]:
        """Expressions that merge partial rows of the same window, inside a group-by.

        Rows must be in arrival order (older state first), so ties in first/last go to the
        reading that arrived first/last, exactly as a per-reading model would decide.
        """
        exprs: list[pl.Expr] = [pl.col(COUNT).sum().alias(COUNT)]
        for m, parts in _needs(self.aggregates).items():
            n = pl.col(partial_column(m, "n"))
            if "n" in parts:
                exprs.append(n.sum().alias(partial_column(m, "n")))
            if "sum" in parts:
                exprs.append(pl.col(partial_column(m, "sum")).sum().alias(partial_column(m, "sum")))
            if "min" in parts:
                exprs.append(pl.col(partial_column(m, "min")).min().alias(partial_column(m, "min")))
            if "max" in parts:
                exprs.append(pl.col(partial_column(m, "max")).max().alias(partial_column(m, "max")))
            if "mean" in parts:
                mean, m2 = pl.col(partial_column(m, "mean")), pl.col(partial_column(m, "m2"))
                total = n.sum()
                # No values yet: the mean stays null, never 0/0 = NaN, which would poison
                # every later merge of this window.
                merged_mean = pl.when(total > 0).then((n * mean).sum() / total)
                exprs.append(merged_mean.alias(partial_column(m, "mean")))
                spread = (n * (mean - merged_mean) ** 2).sum()
                exprs.append((m2.sum() + spread).alias(partial_column(m, "m2")))
            for end, nulls_last, pick in (("first", True, "first"), ("last", False, "last")):
                if end not in parts:
                    continue
                ts = pl.col(partial_column(m, f"{end}_ts"))
                ordered_value = pl.col(partial_column(m, end)).sort_by(
                    ts, nulls_last=nulls_last, maintain_order=True
                )
                ordered_ts = ts.sort(nulls_last=nulls_last)
                exprs.append(getattr(ordered_value, pick)().alias(partial_column(m, end)))
                exprs.append(getattr(ordered_ts, pick)().alias(partial_column(m, f"{end}_ts")))
        return exprs

    def finish_exprs(self) -> list[pl.Expr]:
        """Expressions turning partial columns into the declared outputs (not percentiles)."""
        exprs: list[pl.Expr] = []
        for agg in self.aggregates:
            m, fn = agg.measurement, agg.function
            if m is None:
                exprs.append(pl.col(COUNT).alias(agg.name))
                continue
            if agg.quantile is not None:
                continue
            n = pl.col(partial_column(m, "n"))
            expr: pl.Expr
            if fn == "count":
                expr = n
            elif fn == "sum":
                expr = pl.when(n > 0).then(pl.col(partial_column(m, "sum")))
            elif fn == "mean":
                expr = pl.when(n > 0).then(pl.col(partial_column(m, "sum")) / n)
            elif fn in ("min", "max", "first", "last"):
                expr = pl.col(partial_column(m, fn))
            else:
                variance = pl.when(n > 1).then(pl.col(partial_column(m, "m2")) / (n - 1))
                expr = variance.sqrt() if fn == "stddev" else variance
            exprs.append(expr.alias(agg.name))
        return exprs

    def output_names(self) -> list[str]:
        """Declared output columns in order."""
        return [a.name for a in self.aggregates]

    def percentile_outputs(self) -> Iterable[tuple[str, str, float]]:
        """(measurement, output name, quantile) of each percentile aggregate."""
        for a in self.aggregates:
            if a.quantile is not None and a.measurement:
                yield a.measurement, a.name, a.quantile


def sketch_partials(
    rows: pl.DataFrame, group: Sequence[str], plan: AggregatePlan
) -> pl.DataFrame | None:
    """Bucket counts of every percentile measurement of raw rows, or None if none is declared."""
    measurements = plan.percentile_measurements
    if not measurements:
        return None
    parts = [
        rows.filter(pl.col(m).is_not_null())
        .select(
            *group,
            pl.lit(m).alias("measurement"),
            percentiles.bucket(pl.col(m).cast(pl.Float64)).alias("bucket"),
        )
        .group_by([*group, "measurement", "bucket"])
        .agg(pl.len().cast(pl.Int64).alias("count"))
        for m in measurements
    ]
    return pl.concat(parts)
