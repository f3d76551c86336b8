"""Small builders shared by the engine's unit tests: readable times, batches, plans, results.

Times are seconds since the epoch, so window grids start at 0 and read like the spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import polars as pl

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.task import Dedup, EnginePlan, EventTime
from sensorstream.engine.windows import Window, WindowStep
from sensorstream.engine.windows.base import EmitMode
from sensorstream.testing import readings_frame

SECOND_US = 1_000_000


def s(seconds: float) -> timedelta:
    """A duration in seconds."""
    return timedelta(seconds=seconds)


def us(seconds: float) -> int:
    """Seconds as microseconds."""
    return round(seconds * SECOND_US)


def batch(*readings: tuple[str, float, float | None]) -> pl.DataFrame:
    """Readings of one ``value`` measurement from (device, seconds, value), in arrival order."""
    return readings_frame(
        [{"device_id": device, "ts": us(at), "value": value} for device, at, value in readings],
        measurements=("value",),
    )


def plan(
    window: Window | None = None,
    aggregates: Sequence[Aggregate] = (Aggregate("count"),),
    *,
    key: tuple[str, ...] = ("device_id",),
    out_of_orderness: float = 0,
    allowed_lateness: float = 0,
    idle_timeout: float | None = None,
    dedup: Dedup | None = None,
    emit: EmitMode = "on_close",
) -> EnginePlan:
    """A plan with one step named ``w`` over the ``value`` measurement (none if no window)."""
    steps = () if window is None else (WindowStep("w", window, key, tuple(aggregates), emit),)
    event_time = EventTime(
        out_of_orderness=s(out_of_orderness),
        allowed_lateness=s(allowed_lateness),
        idle_timeout=None if idle_timeout is None else s(idle_timeout),
    )
    return EnginePlan(("value",), steps, event_time, dedup or Dedup())


def rows(frame: pl.DataFrame | None, *columns: str) -> list[tuple[object, ...]]:
    """Result rows as (device, start s, end s, *columns), bounds in seconds, sorted."""
    if frame is None or frame.width == 0:
        return []
    bounds = pl.col("window_start", "window_end").cast(pl.Int64) / SECOND_US
    table = frame.with_columns(bounds)
    key = ["device_id"] if "device_id" in table.columns else []
    selected = table.select(*key, "window_start", "window_end", *columns)
    return list(selected.sort([*key, "window_start"], maintain_order=True).iter_rows())
