"""Every kind of condition, by the name YAML gives it: the one registry of rule kinds."""

from __future__ import annotations

from sensorstream.engine.rules.anomaly import Anomaly
from sensorstream.engine.rules.conditions import AllOf, Condition, Expression, Threshold
from sensorstream.engine.rules.deadman import Deadman
from sensorstream.engine.rules.per_key import Range, Rate, Unchanged
from sensorstream.engine.rules.statistics import Ewma, Spike, ZScore

CONDITIONS: dict[str, type[Condition]] = {
    "threshold": Threshold,
    "when": Expression,
    "all": AllOf,
    "range": Range,
    "unchanged": Unchanged,
    "rate": Rate,
    "spike": Spike,
    "zscore": ZScore,
    "ewma": Ewma,
    "anomaly": Anomaly,
    "deadman": Deadman,
}
