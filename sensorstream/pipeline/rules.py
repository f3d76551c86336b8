"""Rules as YAML writes them: a condition, and how its breaches become alerts.

::

    steps:
      - name: hot_rooms
        input: avg_1m                  # a window's results (or readings, or a derive step)
        rule:
          threshold: temperature_mean
          above: {notice: 10, warning: 20, critical: 30}
          clear: 1                     # hysteresis: a level clears 1 below its bound
        consecutive: 2                 # two windows in a row before it fires
        for: 0s                        # and held this long (a pending period)
        flapping: {changes: 6, within: 10m, settle: 10m}   # or false
        judge: on_close                # or final: wait until a window can no longer change

A condition is a mapping named by its kind's key: ``threshold``, ``when`` (a SQL
condition), ``all`` (several at once), and the kinds of :mod:`.rule_kinds` (``range``,
``unchanged``, ``rate``, ``spike``, ``zscore``, ``ewma``, ``anomaly``, ``deadman``), all
registered in :data:`CONDITION_SPECS`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from sensorstream.durations import Duration
from sensorstream.engine.rules import (
    AlertPolicy,
    AllOf,
    Condition,
    Expression,
    Flapping,
    RuleStep,
    Threshold,
)
from sensorstream.engine.steps import READINGS
from sensorstream.pipeline.rule_kinds import (
    KIND_SPECS,
    AnomalySpec,
    DeadmanSpec,
    EwmaSpec,
    KindSpec,
    RangeSpec,
    RateSpec,
    SpikeSpec,
    UnchangedSpec,
    ZScoreSpec,
)

_STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )


class ThresholdSpec(KindSpec):
    """``{threshold: temperature, above: {warning: 30, critical: 40}, clear: 1}``."""

    kind: ClassVar[str] = "threshold"
    threshold: str
    above: dict[str, float] | None = None
    below: dict[str, float] | None = None
    clear: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one_direction(self) -> ThresholdSpec:
        if (self.above is None) == (self.below is None):
            msg = "a threshold has levels either above: {warning: 30} or below: {warning: 5}"
            raise ValueError(msg)
        levels = self.above if self.above is not None else self.below
        if not levels:
            msg = "a threshold needs at least one level, e.g. above: {warning: 30}"
            raise ValueError(msg)
        return self

    def to_condition(self) -> Condition:
        """The engine's threshold, its levels ordered by their bounds.

        A mapping's order is not the bound's: YAML tools reorder keys (``safe_dump`` sorts
        them), so ``{critical: 31, warning: 28}`` means what ``{warning: 28, critical: 31}``
        does. Equal bounds stay an error.
        """
        direction: Literal["above", "below"] = "above" if self.above is not None else "below"
        levels = sorted(
            (self.above if self.above is not None else self.below or {}).items(),
            key=lambda level: level[1],
            reverse=direction == "below",
        )
        return Threshold(self.threshold, tuple(levels), direction, self.clear)


class WhenSpec(KindSpec):
    """``{when: "temperature > 30 AND humidity < 20", severity: critical}``."""

    kind: ClassVar[str] = "when"
    when: str
    severity: str = "warning"

    def to_condition(self) -> Condition:
        """The engine's SQL condition."""
        return Expression(self.when, self.severity)


class AllSpec(KindSpec):
    """``{all: [{when: ...}, {threshold: ...}], severity: critical}``: every one at once."""

    kind: ClassVar[str] = "all"
    all: list[ConditionSpec] = Field(min_length=2)
    severity: str = "warning"

    def to_condition(self) -> Condition:
        """The engine's combination."""
        return AllOf(tuple(spec.to_condition() for spec in self.all), self.severity)


# Each condition kind YAML knows, by the key that names it in a rule.
_SPECS: tuple[type[KindSpec], ...] = (ThresholdSpec, WhenSpec, AllSpec, *KIND_SPECS)
CONDITION_SPECS: dict[str, type[KindSpec]] = {spec.kind: spec for spec in _SPECS}
_TAG = " condition"  # a union tag no YAML key can be, so error locations drop it


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        kind = getattr(value, "kind", None)
    elif isinstance(value, dict):
        kind = next((kind for kind in CONDITION_SPECS if kind in value), None)
    else:
        kind = None
    return None if kind is None else f"{kind}{_TAG}"


ConditionSpec = Annotated[
    Annotated[ThresholdSpec, Tag(f"threshold{_TAG}")]
    | Annotated[WhenSpec, Tag(f"when{_TAG}")]
    | Annotated[AllSpec, Tag(f"all{_TAG}")]
    | Annotated[RangeSpec, Tag(f"range{_TAG}")]
    | Annotated[UnchangedSpec, Tag(f"unchanged{_TAG}")]
    | Annotated[RateSpec, Tag(f"rate{_TAG}")]
    | Annotated[SpikeSpec, Tag(f"spike{_TAG}")]
    | Annotated[ZScoreSpec, Tag(f"zscore{_TAG}")]
    | Annotated[EwmaSpec, Tag(f"ewma{_TAG}")]
    | Annotated[AnomalySpec, Tag(f"anomaly{_TAG}")]
    | Annotated[DeadmanSpec, Tag(f"deadman{_TAG}")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message=(
            "a rule names its condition by its kind: "
            + ", ".join(CONDITION_SPECS)
            + " (e.g. {threshold: temperature, above: {warning: 30}})"
        ),
    ),
]
AllSpec.model_rebuild()


class FlappingSpec(_Model):
    """When an alert counts as flapping, and how long it must be quiet to settle."""

    changes: int = Field(default=6, ge=2)
    within: Duration = Field(default="10m", validate_default=True)
    settle: Duration = Field(default="10m", validate_default=True)


class RuleStepSpec(_Model):
    """A rule step: a condition judged per key, and the policy of the alerts it opens."""

    name: str = Field(pattern=_STEP_NAME)
    input: str = READINGS
    rule: ConditionSpec
    key: list[str] | None = None
    consecutive: int = Field(default=1, ge=1)
    hold: Duration = Field(default="0s", alias="for", validate_default=True)
    flapping: FlappingSpec | Literal[False] = FlappingSpec()
    judge: Literal["on_close", "final"] = "on_close"

    def to_step(self) -> RuleStep:
        """The engine-side step."""
        flapping = (
            Flapping(enabled=False)
            if self.flapping is False
            else Flapping(self.flapping.changes, self.flapping.within, self.flapping.settle)
        )
        hold: timedelta = self.hold
        return RuleStep(
            name=self.name,
            input=self.input,
            condition=self.rule.to_condition(),
            key=tuple(self.key or ()),
            policy=AlertPolicy(self.consecutive, hold, flapping),
            judge=self.judge,
            by_input_key=self.key is None,
        )
