"""Tumbling windows: back-to-back windows of one size, each reading in exactly one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sensorstream.engine.windows.fixed import FixedWindowOperator
from sensorstream.errors import ConfigError

if TYPE_CHECKING:
    from sensorstream.engine.windows import WindowStep


@dataclass(frozen=True)
class TumblingWindow:
    """``TumblingWindow(size=timedelta(minutes=1))``: [00:00, 00:01), [00:01, 00:02), ..."""

    size: timedelta
    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.size <= timedelta(0):
            msg = f"a tumbling window's size must be positive, got {self.size}"
            raise ConfigError(msg)

    def build(self, step: WindowStep, allowed_lateness: timedelta) -> FixedWindowOperator:
        """The operator that runs this window for one partition."""
        return FixedWindowOperator(
            step.name,
            size=self.size,
            slide=self.size,
            offset=self.offset,
            key=step.key,
            aggregates=step.aggregates,
            allowed_lateness=allowed_lateness,
            emit=step.emit,
        )
