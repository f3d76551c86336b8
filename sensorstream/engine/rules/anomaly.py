"""An online anomaly model per key: River's HalfSpaceTrees, behind the ``anomaly`` extra.

``pip install 'sensorstream[anomaly]'`` brings River; a pipeline naming this condition
without it is refused with a ConfigError that names the extra.

Each observation is scored by the key's model *before* the model learns it (so an anomaly
does not vouch for itself), and breaches above ``above`` (scores are 0..1, 1 the most
anomalous; 0 while the model fills its first window of ``window`` observations).

**One model per key of the rule.** A device's own normal is the point of per-key
judgment, and the rule's key chooses the granularity: ``key: [site]`` trains one model per
site, ``key: []`` one for the whole partition. Keys are judged in event-time order, so the
same observations train the same models however they were batched.

**Cost.** Half-space trees learn one observation at a time: this is a Python loop over
observations (about 30 us each with the default 10 trees of height 8, on the reference
machine), unlike every other condition. The live models sit on the keys' carried rows as
Python objects and are pickled only into snapshots (about 170 KB and 40 ms per model with
the defaults): a fleet of thousands of keys wants smaller trees or a z-score instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from sensorstream.engine.rules.conditions import CARRIED, Condition
from sensorstream.engine.rules.lifecycle import LEVEL
from sensorstream.errors import ConfigError

MODEL = "__anomaly_model"
EXTRA = "pip install 'sensorstream[anomaly]'"


def half_space_trees() -> Any:
    """River's ``HalfSpaceTrees`` class, or a ConfigError naming the extra to install."""
    try:
        module = importlib.import_module("river.anomaly")
    except ImportError:
        msg = f"the anomaly condition needs River, which is not installed: {EXTRA}"
        raise ConfigError(msg) from None
    return module.HalfSpaceTrees


@dataclass(frozen=True)
class Anomaly(Condition):
    """Breaches when the key's HalfSpaceTrees scores an observation above ``above``.

    ``limits`` gives each feature's usual span (``(column, low, high)``), which the trees
    split; values outside it still score. ``seed`` fixes the trees, so runs repeat.
    """

    columns: tuple[str, ...]
    limits: tuple[tuple[str, float, float], ...]
    above: float = 0.9
    trees: int = 10
    height: int = 8
    window: int = 250
    seed: int = 42
    severity: str = "warning"

    def __post_init__(self) -> None:
        half_space_trees()
        if not self.columns:
            msg = "an anomaly model needs at least one column, e.g. anomaly: temperature"
            raise ConfigError(msg)
        spans = {column: (low, high) for column, low, high in self.limits}
        missing = [column for column in self.columns if column not in spans]
        if missing or set(spans) - set(self.columns):
            msg = (
                f"limits must give each column of the model its span, e.g. "
                f"{{{self.columns[0]}: [0, 100]}}; columns {list(self.columns)}, "
                f"limits for {sorted(spans)}"
            )
            raise ConfigError(msg)
        if any(low >= high for low, high in spans.values()):
            msg = "each limit must be [low, high] with low < high"
            raise ConfigError(msg)
        if not 0 < self.above < 1:
            msg = f"above must be a score between 0 and 1, got {self.above}"
            raise ConfigError(msg)
        if min(self.trees, self.height, self.window) < 1:
            msg = "trees, height and window must be at least 1"
            raise ConfigError(msg)

    @property
    def severities(self) -> tuple[str, ...]:
        """Its one severity."""
        return (self.severity,)

    @property
    def value(self) -> str | None:
        """The model's first column (reported with the alert)."""
        return self.columns[0]

    def reads(self) -> list[str]:
        """The model's features."""
        return list(self.columns)

    def carry(self) -> dict[str, pl.DataType]:
        """The key's live model (pickled into snapshots)."""
        return {MODEL: pl.Object()}

    def model(self) -> Any:
        """A new, untrained model with this condition's settings."""
        return half_space_trees()(
            n_trees=self.trees,
            height=self.height,
            window_size=self.window,
            limits={column: (low, high) for column, low, high in self.limits},
            seed=self.seed,
        )

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """Score then learn each observation in order, per key (a Python loop, see above)."""
        keys = frame.select(key).rows() if key else [()] * frame.height
        carried = frame.get_column(CARRIED).to_list()
        kept = frame.get_column(MODEL).to_list()
        levels = frame.get_column(LEVEL).to_list()
        features = list(
            zip(
                *(frame.get_column(c).cast(pl.Float64).to_list() for c in self.columns), strict=True
            )
        )
        models: list[Any] = [None] * frame.height
        current: Any = None
        for row in range(frame.height):
            if row == 0 or keys[row] != keys[row - 1]:
                current = None
            values = features[row]
            if carried[row]:
                current = kept[row]
            elif any(v is None for v in values):
                levels[row] = 0
            else:
                if current is None:
                    current = self.model()
                x = dict(zip(self.columns, values, strict=True))
                levels[row] = int(current.score_one(x) > self.above)
                current.learn_one(x)
            if row + 1 == frame.height or keys[row + 1] != keys[row]:
                models[row] = current  # only a key's last row is carried on
        return frame.with_columns(
            pl.Series(LEVEL, levels, pl.Int8), pl.Series(MODEL, models, pl.Object)
        )

    def describe(self, level: int, value: float | None) -> str:
        """Whether the model finds it anomalous."""
        shown = "null" if value is None else f"{value:g}"
        if level == 0:
            return f"{self.columns[0]} {shown}: no longer anomalous"
        return f"{self.columns[0]} {shown}: anomaly score above {self.above:g}"
