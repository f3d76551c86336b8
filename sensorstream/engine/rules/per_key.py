"""Conditions that judge an observation against its own key: its range, its last value, its pace.

- :class:`Range`: outside the key's own range (heartwatch's historical ranges per user);
- :class:`Unchanged`: the value has not changed for a while (heartwatch's "has not moved");
- :class:`Rate`: the change since the key's previous observation, per unit of time.

Each is columnar over a release; what it keeps between releases sits on the key's carried
row (the last value and its time, the instant the current value began).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

import polars as pl

from sensorstream.engine.rules.conditions import CARRIED, Condition, OneColumn, TableLookup
from sensorstream.engine.rules.lifecycle import LEVEL
from sensorstream.engine.rules.within_key import filled_in_key, shifted_in_key
from sensorstream.engine.time import micros
from sensorstream.errors import ConfigError
from sensorstream.readings import TS

_KEY, _LOW, _HIGH = "__range_key", "__range_low", "__range_high"


def _judged(frame: pl.DataFrame, breach: pl.Expr, *updates: pl.Expr) -> pl.DataFrame:
    """``frame`` with level 1 where ``breach`` holds (carried rows keep theirs)."""
    level = pl.when(breach.fill_null(False)).then(pl.lit(1, pl.Int8)).otherwise(pl.lit(0, pl.Int8))
    computed = pl.when(pl.col(CARRIED)).then(pl.col(LEVEL)).otherwise(level).cast(pl.Int8)
    return frame.with_columns(*updates, computed.alias(LEVEL))


@dataclass(frozen=True)
class Range(OneColumn):
    """Outside the key's own range: ``low <= value <= high`` is ok, per key value.

    The ranges are either given (``ranges``: a small table joined to each release on the
    rule's key) or read from a table by the rule's key (``table``, with its ``low`` and
    ``high`` columns: heartwatch's historical ranges per user, kept in PostgreSQL). A key
    with no range is not judged (always ok); a null value is ok.

    >>> Range("heart_rate", (("u1", 60, 100),)).table_of_ranges().row(0)
    ('u1', 60.0, 100.0)
    """

    column: str
    ranges: tuple[tuple[str, float, float], ...] = ()  # (key value, low, high)
    severity: str = "warning"
    table: str | None = None  # a table holding each key's range
    low: str = "low"
    high: str = "high"

    def __post_init__(self) -> None:
        if self.table is not None:
            if self.ranges:
                msg = "a range reads its ranges from a table or lists them, not both"
                raise ConfigError(msg)
            return
        if not self.ranges:
            msg = (
                "a range needs each key's range, e.g. ranges: {u1: [60, 100]}, or a table "
                "holding them (table: ranges, low: low, high: high)"
            )
            raise ConfigError(msg)
        keys = [key for key, _, _ in self.ranges]
        if len(set(keys)) != len(keys):
            repeated = sorted({k for k in keys if keys.count(k) > 1})
            msg = f"each key has one range; repeated: {repeated}"
            raise ConfigError(msg)
        for key, low, high in self.ranges:
            if low > high:
                msg = f"the range of {key!r} must not end below its start, got [{low:g}, {high:g}]"
                raise ConfigError(msg)

    def check_key(self, key: Sequence[str]) -> str | None:
        """Ranges are per value of one key column."""
        if len(key) == 1:
            return None
        return f"a range is looked up by one key column, and the rule's key is {list(key)}"

    def lookups(self) -> tuple[TableLookup, ...]:
        """The table's low and high columns, when the ranges come from a table."""
        if self.table is None:
            return ()
        return (TableLookup(self.table, ((self.low, _LOW), (self.high, _HIGH))),)

    def table_of_ranges(self) -> pl.DataFrame:
        """The given ranges as a frame: key value, low, high."""
        keys, lows, highs = zip(*self.ranges, strict=True)
        return pl.DataFrame(
            {_KEY: list(keys), _LOW: list(lows), _HIGH: list(highs)},
            schema={_KEY: pl.String(), _LOW: pl.Float64(), _HIGH: pl.Float64()},
        )

    def candidates(self) -> pl.Expr | None:
        """Rows outside the narrowest band every range holds (the others are in every range)."""
        if self.table is not None:
            return None  # a table's ranges change while running: every row may breach
        lowest_high = min(high for _, _, high in self.ranges)
        highest_low = max(low for _, low, _ in self.ranges)
        value = pl.col(self.column)
        return (value < highest_low) | (value > lowest_high)

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 where the value lies outside its key's range (a join per release)."""
        [column] = key
        if self.table is None:
            frame = frame.join(
                self.table_of_ranges(),
                left_on=pl.col(column).cast(pl.String),
                right_on=_KEY,
                how="left",
                maintain_order="left",
            )
        value = pl.col(self.column)
        breach = (value < pl.col(_LOW).cast(pl.Float64)) | (value > pl.col(_HIGH).cast(pl.Float64))
        return _judged(frame, breach).drop(_LOW, _HIGH, _KEY, strict=False)

    def describe(self, level: int, value: float | None) -> str:
        """``heart_rate 120: outside the key's range``."""
        shown = "null" if value is None else f"{value:g}"
        if level == 0:
            return f"{self.column} {shown}: back within the key's range"
        return f"{self.column} {shown}: outside the key's range ({self.severity})"


_SINCE, _LAST = "__unchanged_since", "__unchanged_last"


@dataclass(frozen=True)
class Unchanged(Condition):
    """The value has not changed for at least ``hold`` of event time (YAML ``for``).

    Heartwatch's "location unchanged for 30 s": it holds at each observation at least
    ``hold`` after the first observation of the current value. Values are compared exactly
    (a geo position by both coordinates); a null value tells nothing, so it neither changes
    nor confirms the value, and before a key's first value nothing holds.

    >>> Unchanged("location", timedelta(seconds=30)).describe(1, None)
    'location unchanged for 0:00:30'
    """

    column: str
    hold: timedelta
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.hold <= timedelta(0):
            msg = f"unchanged needs a positive duration (for: 30s), got {self.hold}"
            raise ConfigError(msg)

    @property
    def severities(self) -> tuple[str, ...]:
        """Its one severity."""
        return (self.severity,)

    def reads(self) -> list[str]:
        """The watched column."""
        return [self.column]

    def carry(self) -> dict[str, pl.DataType]:
        """The key's last value (as exact text) and when it began."""
        return {_LAST: pl.String(), _SINCE: pl.Int64()}

    def _text(self, frame: pl.DataFrame) -> pl.Expr:
        """The value as text that is equal exactly when the values are (floats round-trip)."""
        value = pl.col(self.column)
        kind = frame.schema[self.column]
        if isinstance(kind, pl.Struct):
            return pl.when(value.is_not_null()).then(value.struct.json_encode())
        return value.cast(pl.String)

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 where the current value began at least ``hold`` ago."""
        carried = pl.col(CARRIED)
        text = self._text(frame)
        ts = pl.col(TS).cast(pl.Int64)
        known = filled_in_key(pl.when(carried).then(pl.col(_LAST)).otherwise(text), key)
        frame = frame.with_columns(known.alias("__known"))
        before = shifted_in_key(pl.col("__known"), key)
        begins = ~carried & text.is_not_null() & (before.is_null() | (text != before))
        since = pl.when(carried).then(pl.col(_SINCE)).when(begins).then(ts).otherwise(None)
        frame = frame.with_columns(filled_in_key(since, key).alias(_SINCE))
        held = (ts - pl.col(_SINCE)) >= micros(self.hold)
        return _judged(frame, held, pl.col("__known").alias(_LAST)).drop("__known")

    def describe(self, level: int, value: float | None) -> str:
        """Whether it has stayed the same long enough."""
        if level == 0:
            return f"{self.column} changed, or not unchanged for {self.hold} yet"
        return f"{self.column} unchanged for {self.hold}"


_RATE_VALUE, _RATE_TS = "__rate_value", "__rate_ts"


@dataclass(frozen=True)
class Rate(OneColumn):
    """A rise of more than ``rise`` (or a fall of more than ``fall``) per ``per``.

    The change is against the key's previous observation, scaled to ``per``:
    ``(value - previous) * per / (ts - previous ts)``. A key's first observation has no
    previous one, and neither has an observation at the same instant as the previous one:
    both are ok.

    >>> Rate("temperature", timedelta(minutes=1), rise=5).describe(1, 31.0)
    'temperature 31: changing by more than +5 per 0:01:00'
    """

    column: str
    per: timedelta = timedelta(minutes=1)
    rise: float | None = None
    fall: float | None = None
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.rise is None and self.fall is None:
            msg = "a rate needs rise: D and/or fall: D (a change of more than D per unit of time)"
            raise ConfigError(msg)
        if any(limit is not None and limit <= 0 for limit in (self.rise, self.fall)):
            msg = f"rise and fall must be positive, got rise {self.rise}, fall {self.fall}"
            raise ConfigError(msg)
        if self.per <= timedelta(0):
            msg = f"per must be a positive duration, got {self.per}"
            raise ConfigError(msg)

    def carry(self) -> dict[str, pl.DataType]:
        """The key's last value and its time."""
        return {_RATE_VALUE: pl.Float64(), _RATE_TS: pl.Int64()}

    @cached_property
    def _per_us(self) -> int:
        return micros(self.per)

    def change(self, value: pl.Expr, previous: pl.Expr, elapsed_us: pl.Expr) -> pl.Expr:
        """The change per ``per`` (the model computes it in the same order, to the bit)."""
        return (value - previous) * self._per_us / elapsed_us

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 where the change since the previous observation is too fast."""
        carried = pl.col(CARRIED)
        value = pl.col(self.column).cast(pl.Float64)
        ts = pl.col(TS).cast(pl.Int64)
        last_value = pl.when(carried).then(pl.col(_RATE_VALUE)).otherwise(value)
        last_ts = (
            pl.when(carried)
            .then(pl.col(_RATE_TS))
            .when(value.is_not_null())
            .then(ts)
            .otherwise(None)
        )
        frame = frame.with_columns(
            filled_in_key(last_value, key).alias(_RATE_VALUE),
            filled_in_key(last_ts, key).alias(_RATE_TS),
        )
        previous = shifted_in_key(pl.col(_RATE_VALUE), key)
        elapsed = ts - shifted_in_key(pl.col(_RATE_TS), key)
        change = pl.when(elapsed > 0).then(self.change(value, previous, elapsed))
        breach = pl.lit(False)
        if self.rise is not None:
            breach = breach | (change > self.rise)
        if self.fall is not None:
            breach = breach | (change < -self.fall)
        return _judged(frame, breach)

    def describe(self, level: int, value: float | None) -> str:
        """``temperature 31: changing by more than +5 per 0:01:00``."""
        shown = "null" if value is None else f"{value:g}"
        limits = " or ".join(
            text
            for text in (
                f"+{self.rise:g}" if self.rise is not None else None,
                f"-{self.fall:g}" if self.fall is not None else None,
            )
            if text
        )
        if level == 0:
            return f"{self.column} {shown}: changing no faster than {limits} per {self.per}"
        return f"{self.column} {shown}: changing by more than {limits} per {self.per}"
