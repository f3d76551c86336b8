"""A deadman: a key silent for longer than its timeout, in event time or processing time.

Silence is an observation that time makes: at the instant a key has been silent for
``timeout`` the deadman adds a row of level 1 for it (:meth:`Deadman.passing`), which the
rule judges like any other, and the key's next observation (level 0) resolves it. So the
lifecycle's ``for``, flapping and ids apply unchanged; ``consecutive`` counts silences,
which are never consecutive (a silence ends with an observation), so use ``for``.

**Event time** (``clock: event``): a key whose last observation is at ``t`` breaches at
``t + timeout`` once the watermark reaches it (nothing at or before the watermark can still
arrive). The end of the input is not a passing of time: a replay that ends leaves its keys
as they were. A rule with ``key: []`` watches the whole partition: "no data at all",
which, when a source goes quiet, the watermark learns through ``idle_timeout``.

**Processing time** (``clock: processing``): a key's observations are its arrivals, at the
processing time of the tick after their batch, and it breaches ``timeout`` after its last
arrival. Its transitions' times are processing times. Not reproducible across restarts,
by nature: as with idleness, a restart restarts every key's silence at its first tick
(:meth:`Deadman.restart`), so downtime alone alerts on no key.

The keys a deadman knows are those it has seen: a key never seen never alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Literal

import polars as pl

from sensorstream.engine.rules.conditions import CARRIED, Condition
from sensorstream.engine.rules.lifecycle import LEVEL
from sensorstream.engine.rules.within_key import filled_in_key, shifted_in_key
from sensorstream.engine.time import micros
from sensorstream.errors import ConfigError
from sensorstream.readings import TS

LAST, SILENT = "__deadman_last", "__deadman_silent"


@dataclass(frozen=True)
class Deadman(Condition):
    """Breaches when a key has had no observation for longer than ``timeout``.

    >>> Deadman(timedelta(minutes=5)).describe(1, None)
    'no observation for more than 0:05:00 (event time)'
    """

    timeout: timedelta
    clock: Literal["event", "processing"] = "event"
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.timeout <= timedelta(0):
            msg = f"a deadman needs a positive timeout (deadman: 5m), got {self.timeout}"
            raise ConfigError(msg)
        if self.clock not in ("event", "processing"):
            msg = f"a deadman's clock is event or processing, got {self.clock!r}"
            raise ConfigError(msg)

    @property
    def severities(self) -> tuple[str, ...]:
        """Its one severity."""
        return (self.severity,)

    @property
    def timer(self) -> Literal["event", "processing"] | None:
        """The clock its silences are measured on."""
        return self.clock

    def reads(self) -> list[str]:
        """Nothing: any observation of a key is a sign of life."""
        return []

    def carry(self) -> dict[str, pl.DataType]:
        """The time of the key's last observation."""
        return {LAST: pl.Int64()}

    @cached_property
    def _timeout_us(self) -> int:
        return micros(self.timeout)

    def passing(
        self, frame: pl.DataFrame, key: Sequence[str], now: int | None
    ) -> pl.DataFrame | None:
        """A silence row at each instant a key had been silent for the timeout, up to ``now``.

        Between two observations further apart than the timeout (unless the carried row
        already is that silence), and after a key's last observation if ``now`` is past it.
        """
        carried = pl.col(CARRIED)
        ts = pl.col(TS).cast(pl.Int64)
        silent = carried & (pl.col(LEVEL).fill_null(0) > 0)
        heard = pl.when(carried).then(pl.col(LAST)).otherwise(ts)
        marked = frame.with_columns(
            heard.alias("__heard"),
            shifted_in_key(heard, key).alias("__previous"),
            shifted_in_key(silent, key).fill_null(False).alias("__was_silent"),
        )
        previous = pl.col("__previous")
        breaks = ~carried & previous.is_not_null() & (ts - previous > self._timeout_us)
        at = (previous + self._timeout_us).alias(TS)
        silences = [marked.filter(breaks & ~pl.col("__was_silent")).select(*key, at)]
        if now is not None:
            last = marked.group_by(list(key), maintain_order=True).last() if key else marked.tail(1)
            ends = pl.col("__heard") + self._timeout_us
            due = ~silent & (ends <= now)
            silences.append(last.filter(due.fill_null(False)).select(*key, ends.alias(TS)))
        found = pl.concat(silences, how="vertical_relaxed")
        if found.height == 0:
            return None
        return found.with_columns(pl.col(TS).cast(frame.schema[TS]), pl.lit(True).alias(SILENT))

    def due(self, now: int) -> pl.Expr | None:
        """Carried keys not yet silent whose last observation is a timeout before ``now``."""
        return (pl.col(LEVEL).fill_null(0) == 0) & (pl.col(LAST) + self._timeout_us <= now)

    def restart(self, now: int) -> list[pl.Expr]:
        """Keys not silent restart their silence at ``now``; silent ones stay silent."""
        alive = pl.col(LEVEL).fill_null(0) == 0
        return [pl.when(alive).then(pl.lit(now, pl.Int64)).otherwise(pl.col(LAST)).alias(LAST)]

    def level(self, frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """1 on silence rows, 0 on observations."""
        carried = pl.col(CARRIED)
        silent = pl.col(SILENT).fill_null(False) if SILENT in frame.columns else pl.lit(False)
        level = pl.when(carried).then(pl.col(LEVEL)).when(silent).then(1).otherwise(0)
        heard = pl.when(carried).then(pl.col(LAST)).when(~silent).then(pl.col(TS).cast(pl.Int64))
        frame = frame.with_columns(
            level.cast(pl.Int8).alias(LEVEL), filled_in_key(heard, key).alias(LAST)
        )
        return frame.drop(SILENT, strict=False)

    def describe(self, level: int, value: float | None) -> str:
        """Silent, or heard from again."""
        if level == 0:
            return f"heard from again ({self.clock} time)"
        return f"no observation for more than {self.timeout} ({self.clock} time)"
