"""What makes an observation breach: a condition gives each one a level, 0 (ok) or a severity.

A condition is a frozen declaration. It evaluates a frame of one release's observations,
sorted by key and event time, where each key's first row may be a *carried* row
(``__carry``): the last observation of the previous release with the columns the condition
keeps between releases (:meth:`Condition.carry`), such as whether each threshold is on. So
every condition is columnar over the batch, and exact across batches and restarts.

``candidates`` lets a rule skip the keys that cannot change: rows it is false for cannot
move a key out of ``ok`` on their own; keys with no candidate row and nothing open are left
alone. A condition that needs every observation (a rate of change keeps the previous value)
returns None.

A condition whose state lives in a list or a model (a rolling window, a trained model)
need only update its carry columns on each key's last row: that row is what the rule
keeps. Time alone can make observations too: a deadman's silence is one, at the instant a
key has been silent long enough (:meth:`Condition.passing`, :meth:`Condition.due`).

This module holds the contract and the kinds that judge each observation on its own
(threshold, when, all); :mod:`.per_key`, :mod:`.statistics`, :mod:`.deadman` and
:mod:`.anomaly` hold the others. Each kind is registered in
:data:`~sensorstream.engine.rules.kinds.CONDITIONS` under the name YAML uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from sensorstream.engine.derive import parse_expression
from sensorstream.engine.rules.states import CARRIED as CARRIED
from sensorstream.engine.rules.states import LEVEL
from sensorstream.engine.rules.within_key import filled_in_key
from sensorstream.errors import ConfigError


@dataclass(frozen=True)
class TableLookup:
    """Columns a condition reads from a table, per key (a range's low and high per user).

    ``columns`` pairs each table column with the name it gets on the rows judged.
    """

    table: str
    columns: tuple[tuple[str, str], ...]


class Condition(ABC):
    """Base of every condition declaration."""

    @property
    @abstractmethod
    def severities(self) -> tuple[str, ...]:
        """The names of levels 1, 2, ... (one for a yes/no condition)."""

    @property
    def value(self) -> str | None:
        """The column reported as an alert's ``value``, if the condition has one."""
        return None

    @abstractmethod
    def reads(self) -> list[str]:
        """The input columns it reads (checked against the input when the pipeline loads)."""

    def carry(self) -> dict[str, pl.DataType]:
        """Columns it keeps per key from one release to the next; none by default."""
        return {}

    def candidates(self) -> pl.Expr | None:
        """Rows that could open an alert on their own; None if every row matters."""
        return None

    @abstractmethod
    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """``frame`` with ``__level`` (Int8) for every row and its carry columns updated."""

    def check_key(self, key: Sequence[str]) -> str | None:
        """Why it cannot judge per ``key``, or None (a per-key range needs one key column)."""
        del key
        return None

    def lookups(self) -> tuple[TableLookup, ...]:
        """What it reads from tables, looked up by the rule's key before it judges."""
        return ()

    @property
    def timer(self) -> Literal["event", "processing"] | None:
        """The clock that makes observations besides the input (a deadman's), if any."""
        return None

    def passing(
        self, frame: pl.DataFrame, key: Sequence[str], now: int | None
    ) -> pl.DataFrame | None:
        """Observations time alone makes in a release, up to time ``now``; none by default.

        ``frame`` is the release as :meth:`level` sees it (carried rows first); the rows
        returned (key columns, ``ts`` and the condition's own columns) join it before
        :meth:`level`. ``now`` is None at the end of the input, which is no passing time.
        """
        del frame, key, now
        return None

    def due(self, now: int) -> pl.Expr | None:
        """Carried keys that time alone changes by ``now``, with no new observation, if any."""
        del now
        return None

    def restart(self, now: int) -> list[pl.Expr]:
        """Carry updates when its clock restarts at ``now`` after a restore; none by default.

        Only a processing-time condition has any: processing time went on while the
        pipeline was down, which says nothing about the keys.
        """
        del now
        return []

    def describe(self, level: int, value: float | None) -> str:
        """Why an observation has this level, for a person."""
        if level == 0:
            return "back to normal"
        return f"{self.severities[level - 1]}"


class OneColumn(Condition):
    """A condition on one column, with one severity: what most kinds read and show.

    The subclass declares ``column`` and ``severity`` as its fields.
    """

    column: str
    severity: str

    @property
    def severities(self) -> tuple[str, ...]:
        """Its one severity."""
        return (self.severity,)

    @property
    def value(self) -> str | None:
        """The value judged."""
        return self.column

    def reads(self) -> list[str]:
        """The value column."""
        return [self.column]


@dataclass(frozen=True)
class Threshold(Condition):
    """Levels by bounds, with hysteresis: ``ok < 10 <= notice < 20 <= warning < 30 <= critical``.

    ``direction="above"``: a level is on once the value reaches its bound, and stays on until
    it falls below the bound minus ``clear``; ``"below"`` mirrors it ("too low"). With
    ``clear`` 0 the levels follow the value; a positive ``clear`` keeps a value hovering at a
    bound from flapping.

    >>> Threshold("temperature", (("notice", 10), ("warning", 20), ("critical", 30))).severities
    ('notice', 'warning', 'critical')
    """

    column: str
    bounds: tuple[tuple[str, float], ...]
    direction: Literal["above", "below"] = "above"
    clear: float = 0.0

    def __post_init__(self) -> None:
        if not self.bounds:
            msg = "a threshold needs at least one level, e.g. {warning: 30}"
            raise ConfigError(msg)
        values = [bound for _, bound in self.bounds]
        ordered = sorted(values) if self.direction == "above" else sorted(values, reverse=True)
        if values != ordered or len(set(values)) != len(values):
            way = "rise" if self.direction == "above" else "fall"
            msg = f"threshold levels must {way} from one severity to the next, got {values}"
            raise ConfigError(msg)
        if self.clear < 0:
            msg = f"clear must not be negative, got {self.clear}"
            raise ConfigError(msg)

    @property
    def severities(self) -> tuple[str, ...]:
        """The levels' names, least severe first."""
        return tuple(name for name, _ in self.bounds)

    @property
    def value(self) -> str | None:
        """The value compared."""
        return self.column

    def reads(self) -> list[str]:
        """The value column."""
        return [self.column]

    def carry(self) -> dict[str, pl.DataType]:
        """Whether each level is on (only with hysteresis)."""
        if self.clear == 0:
            return {}
        return {self._on(i): pl.Boolean() for i in range(len(self.bounds))}

    def candidates(self) -> pl.Expr | None:
        """Rows at or past the first bound."""
        return self._reaches(0)

    def _on(self, index: int) -> str:
        return f"__on_{index}"

    def _reaches(self, index: int) -> pl.Expr:
        bound = self.bounds[index][1]
        value = pl.col(self.column)
        return value >= bound if self.direction == "above" else value <= bound

    def _clears(self, index: int) -> pl.Expr:
        bound = self.bounds[index][1]
        value = pl.col(self.column)
        return (
            value < bound - self.clear if self.direction == "above" else value > bound + self.clear
        )

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """The highest level on at each observation."""
        carried = pl.col(CARRIED)
        count = len(self.bounds)
        if self.clear == 0:
            on = [self._reaches(i).fill_null(False) for i in range(count)]
            updates: list[pl.Expr] = []
        else:
            on = []
            for i in range(count):
                event = (
                    pl.when(carried)
                    .then(pl.col(self._on(i)))
                    .when(self._reaches(i))
                    .then(True)
                    .when(self._clears(i))
                    .then(False)
                    .otherwise(None)
                )
                on.append(filled_in_key(event, key).fill_null(False))
            updates = [flag.alias(self._on(i)) for i, flag in enumerate(on)]
        level = pl.lit(0, pl.Int8)
        for i, flag in enumerate(on):
            level = pl.when(flag).then(pl.lit(i + 1, pl.Int8)).otherwise(level)
        computed = pl.when(carried).then(pl.col(LEVEL)).otherwise(level)
        return frame.with_columns(*updates, computed.cast(pl.Int8).alias(LEVEL))

    def describe(self, level: int, value: float | None) -> str:
        """``temperature_mean 31.2 >= 30 (critical)``, or why a level holds by hysteresis."""
        shown = "null" if value is None else f"{value:g}"
        past = "below" if self.direction == "above" else "above"
        if level == 0:
            return f"{self.column} {shown}: back {past} every level"
        name, bound = self.bounds[level - 1]
        sign = ">=" if self.direction == "above" else "<="
        reached = value is not None and (value >= bound if sign == ">=" else value <= bound)
        if reached or self.clear == 0:
            return f"{self.column} {shown} {sign} {bound:g} ({name})"
        until = bound - self.clear if self.direction == "above" else bound + self.clear
        return f"{self.column} {shown}: still {name} until {past} {until:g}"


@dataclass(frozen=True)
class Expression(Condition):
    """A yes/no SQL condition on each observation: ``temperature > 30 AND humidity < 20``."""

    when: str
    severity: str = "warning"

    def __post_init__(self) -> None:
        parse_expression(self.when, step="rule", field="when")

    @property
    def severities(self) -> tuple[str, ...]:
        """Its one severity."""
        return (self.severity,)

    def _expr(self) -> pl.Expr:
        return parse_expression(self.when, step="rule", field="when").fill_null(False)

    def reads(self) -> list[str]:
        """The columns the expression names."""
        return list(self._expr().meta.root_names())

    def candidates(self) -> pl.Expr | None:
        """Rows the condition holds for."""
        return self._expr()

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 where the condition holds."""
        level = pl.when(self._expr()).then(pl.lit(1, pl.Int8)).otherwise(pl.lit(0, pl.Int8))
        return frame.with_columns(
            pl.when(pl.col(CARRIED)).then(pl.col(LEVEL)).otherwise(level).cast(pl.Int8).alias(LEVEL)
        )

    def describe(self, level: int, value: float | None) -> str:
        """Whether the condition holds."""
        return f"{self.when} holds" if level else f"{self.when} no longer holds"


@dataclass(frozen=True)
class AllOf(Condition):
    """Several conditions on one key that must all hold at once.

    Heartwatch's: out of the user's range and not moving. Its level is 1 (``severity``)
    while every one of them breaches.
    """

    conditions: tuple[Condition, ...]
    severity: str = "warning"

    def __post_init__(self) -> None:
        if len(self.conditions) < 2:
            msg = "all needs at least two conditions"
            raise ConfigError(msg)
        if any(condition.timer is not None for condition in self.conditions):
            msg = "a deadman stands alone: all combines conditions on observations"
            raise ConfigError(msg)

    @property
    def severities(self) -> tuple[str, ...]:
        """Its one severity."""
        return (self.severity,)

    def reads(self) -> list[str]:
        """Every column any of them reads."""
        return list(dict.fromkeys(c for condition in self.conditions for c in condition.reads()))

    def check_key(self, key: Sequence[str]) -> str | None:
        """The first reason any of them has."""
        return next((why for c in self.conditions if (why := c.check_key(key))), None)

    def lookups(self) -> tuple[TableLookup, ...]:
        """Every condition's table lookups."""
        return tuple(lookup for condition in self.conditions for lookup in condition.lookups())

    def carry(self) -> dict[str, pl.DataType]:
        """Each one's carry, and each one's own level."""
        carried: dict[str, pl.DataType] = {}
        for index, condition in enumerate(self.conditions):
            carried |= {_prefixed(index, name): kind for name, kind in condition.carry().items()}
            carried[_prefixed(index, LEVEL)] = pl.Int8()
        return carried

    def candidates(self) -> pl.Expr | None:
        """Rows every one of them could breach on (a condition needing every row: all rows)."""
        parts = [c.candidates() for c in self.conditions]
        if any(part is None for part in parts):
            return None
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part  # type: ignore[operator]
        return combined

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """Each one's level in turn (under its own column names), then all of them > 0."""
        levels: list[str] = []
        for index, condition in enumerate(self.conditions):
            names = [*condition.carry(), LEVEL]
            own = {_prefixed(index, name): name for name in names}
            swapped = frame.rename({LEVEL: "__all_level"}).rename(own, strict=False)
            evaluated = condition.level(swapped, key)
            frame = evaluated.rename({name: _prefixed(index, name) for name in names}).rename(
                {"__all_level": LEVEL}
            )
            levels.append(_prefixed(index, LEVEL))
        every = pl.all_horizontal([pl.col(name) > 0 for name in levels])
        level = pl.when(every).then(pl.lit(1, pl.Int8)).otherwise(pl.lit(0, pl.Int8))
        return frame.with_columns(
            pl.when(pl.col(CARRIED)).then(pl.col(LEVEL)).otherwise(level).cast(pl.Int8).alias(LEVEL)
        )

    def describe(self, level: int, value: float | None) -> str:
        """That all of them hold, or not."""
        return "all conditions hold" if level else "not all conditions hold any more"


def _prefixed(index: int, name: str) -> str:
    return f"__all{index}{name}"
