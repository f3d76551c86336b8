"""Window declarations (what the user writes) and the operators that run them."""

from __future__ import annotations

from dataclasses import dataclass

from sensorstream.engine.aggregates import Aggregate
from sensorstream.engine.windows.base import EmitMode, WindowOperator
from sensorstream.engine.windows.hopping import HoppingWindow
from sensorstream.engine.windows.session import SessionWindow
from sensorstream.engine.windows.tumbling import TumblingWindow

Window = TumblingWindow | HoppingWindow | SessionWindow


@dataclass(frozen=True)
class WindowStep:
    """A declared windowed aggregation: which window, grouped by which columns, computing what."""

    name: str
    window: Window
    key: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    emit: EmitMode = "on_close"


__all__ = [
    "HoppingWindow",
    "SessionWindow",
    "TumblingWindow",
    "Window",
    "WindowOperator",
    "WindowStep",
]
