"""The YAML of the rule kinds beyond threshold, when and all: one model per kind.

::

    rule: {range: heart_rate, ranges: {u1: [60, 100], u2: [55, 95]}}   # per key value
    rule: {unchanged: location, for: 30s}          # heartwatch's "has not moved"
    rule: {rate: temperature, per: 1m, rise: 5}    # and/or fall: 5
    rule: {spike: rejected_share, above: 0.5, times_baseline: 3, baseline: 10}
    rule: {zscore: temperature, window: 30, above: 3}                 # and/or below: -3
    rule: {ewma: temperature, alpha: 0.1, band: 3}
    rule: {anomaly: temperature, limits: {temperature: [-20, 60]}}    # the anomaly extra
    rule: {deadman: 5m, clock: event}              # or processing; key: [] for the fleet

Each has a ``severity`` (default ``warning``) and turns into the engine's declaration
(:mod:`sensorstream.engine.rules`), whose own checks come back as errors on the rule.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from sensorstream.durations import Duration
from sensorstream.engine.rules import (
    Anomaly,
    Condition,
    Deadman,
    Ewma,
    Range,
    Rate,
    Spike,
    Unchanged,
    ZScore,
)
from sensorstream.errors import ConfigError


class KindSpec(BaseModel):
    """A condition's YAML: its engine declaration must build (its errors name the rule)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )
    kind: ClassVar[str]

    def to_condition(self) -> Condition:
        """The engine's declaration."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _builds(self) -> KindSpec:
        try:
            self.to_condition()
        except ConfigError as error:
            raise ValueError(str(error)) from None
        return self


def _span(value: object) -> object:
    """``[60, 100]`` as a pair; one or three numbers are an error that says what a span is."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            msg = f"a span is two numbers, [low, high], got {list(value)}"
            raise ValueError(msg)
        return tuple(value)
    return value


Span = Annotated[tuple[float, float], BeforeValidator(_span)]


class RangeSpec(KindSpec):
    """Each key value's own range: listed, or read from a table by the rule's key.

    ``{range: heart_rate, ranges: {u1: [60, 100]}}``, or
    ``{range: heart_rate, table: ranges, low: low, high: high}``.
    """

    kind: ClassVar[str] = "range"
    range: str
    severity: str = "warning"
    ranges: dict[str, Span] | None = Field(default=None, min_length=1)
    table: str | None = None
    low: str = "low"
    high: str = "high"

    @model_validator(mode="after")
    def _ranges_or_table(self) -> RangeSpec:
        if (self.ranges is None) == (self.table is None):
            msg = (
                "a range lists each key's range (ranges: {u1: [60, 100]}) or names a table "
                "holding them (table: ranges, low: low, high: high), one of the two"
            )
            raise ValueError(msg)
        return self

    def to_condition(self) -> Condition:
        """The engine's per-key range."""
        if self.table is not None:
            return Range(self.range, (), self.severity, self.table, self.low, self.high)
        spans = tuple((key, low, high) for key, (low, high) in (self.ranges or {}).items())
        return Range(self.range, spans, self.severity)


class UnchangedSpec(KindSpec):
    """``{unchanged: location, for: 30s}``: the value has not changed for that long."""

    kind: ClassVar[str] = "unchanged"
    unchanged: str
    severity: str = "warning"
    hold: Duration = Field(alias="for")

    def to_condition(self) -> Condition:
        """The engine's unchanged condition."""
        return Unchanged(self.unchanged, self.hold, self.severity)


class RateSpec(KindSpec):
    """``{rate: temperature, per: 1m, rise: 5, fall: 5}``: changing too fast."""

    kind: ClassVar[str] = "rate"
    rate: str
    severity: str = "warning"
    per: Duration = Field(default="1m", validate_default=True)
    rise: float | None = Field(default=None, gt=0)
    fall: float | None = Field(default=None, gt=0)

    def to_condition(self) -> Condition:
        """The engine's rate of change."""
        return Rate(self.rate, self.per, self.rise, self.fall, self.severity)


class SpikeSpec(KindSpec):
    """``{spike: rejected_share, above: 0.5, times_baseline: 3, baseline: 10}``."""

    kind: ClassVar[str] = "spike"
    spike: str
    severity: str = "warning"
    above: float | None = None
    times_baseline: float | None = Field(default=None, gt=0)
    baseline: int = Field(default=10, ge=1)

    def to_condition(self) -> Condition:
        """The engine's spike."""
        return Spike(self.spike, self.above, self.times_baseline, self.baseline, self.severity)


class ZScoreSpec(KindSpec):
    """``{zscore: temperature, window: 30, above: 3, below: -3}``."""

    kind: ClassVar[str] = "zscore"
    zscore: str
    severity: str = "warning"
    window: int = Field(default=30, ge=2)
    above: float | None = Field(default=None, gt=0)
    below: float | None = Field(default=None, lt=0)
    min_observations: int = Field(default=5, ge=2)

    def to_condition(self) -> Condition:
        """The engine's z-score."""
        return ZScore(
            self.zscore, self.window, self.above, self.below, self.min_observations, self.severity
        )


class EwmaSpec(KindSpec):
    """``{ewma: temperature, alpha: 0.1, band: 3}``."""

    kind: ClassVar[str] = "ewma"
    ewma: str
    severity: str = "warning"
    alpha: float = Field(gt=0, le=1)
    band: float = Field(gt=0)
    min_observations: int = Field(default=5, ge=2)

    def to_condition(self) -> Condition:
        """The engine's EWMA band."""
        return Ewma(self.ewma, self.alpha, self.band, self.min_observations, self.severity)


class AnomalySpec(KindSpec):
    """``{anomaly: temperature, limits: {temperature: [-20, 60]}, above: 0.9}`` (River)."""

    kind: ClassVar[str] = "anomaly"
    anomaly: str | list[str]
    severity: str = "warning"
    limits: dict[str, Span]
    above: float = Field(default=0.9, gt=0, lt=1)
    trees: int = Field(default=10, ge=1)
    height: int = Field(default=8, ge=1)
    window: int = Field(default=250, ge=1)
    seed: int = 42

    def to_condition(self) -> Condition:
        """The engine's HalfSpaceTrees (ConfigError naming the extra without River)."""
        columns = (self.anomaly,) if isinstance(self.anomaly, str) else tuple(self.anomaly)
        return Anomaly(
            columns,
            tuple((column, low, high) for column, (low, high) in self.limits.items()),
            self.above,
            self.trees,
            self.height,
            self.window,
            self.seed,
            self.severity,
        )


class DeadmanSpec(KindSpec):
    """``{deadman: 5m, clock: event}``: a key silent for longer than that."""

    kind: ClassVar[str] = "deadman"
    deadman: Duration
    severity: str = "warning"
    clock: Literal["event", "processing"] = "event"

    def to_condition(self) -> Condition:
        """The engine's deadman."""
        return Deadman(self.deadman, self.clock, self.severity)


KIND_SPECS: tuple[type[KindSpec], ...] = (
    RangeSpec,
    UnchangedSpec,
    RateSpec,
    SpikeSpec,
    ZScoreSpec,
    EwmaSpec,
    AnomalySpec,
    DeadmanSpec,
)
