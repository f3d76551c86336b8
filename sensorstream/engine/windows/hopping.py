"""Hopping (sliding) windows: windows of one size starting every ``slide``, overlapping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sensorstream.engine.windows.fixed import FixedWindowOperator
from sensorstream.errors import ConfigError

if TYPE_CHECKING:
    from sensorstream.engine.windows import WindowStep


@dataclass(frozen=True)
class HoppingWindow:
    """``HoppingWindow(size=timedelta(minutes=5), slide=timedelta(minutes=1))``."""

    size: timedelta
    slide: timedelta
    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.size <= timedelta(0) or self.slide <= timedelta(0):
            msg = f"a hopping window needs a positive size and slide, got {self.size}, {self.slide}"
            raise ConfigError(msg)
        if self.slide > self.size:
            msg = f"a hopping window's slide ({self.slide}) must not exceed its size ({self.size})"
            raise ConfigError(msg)

    def build(self, step: WindowStep, allowed_lateness: timedelta) -> FixedWindowOperator:
        """The operator that runs this window for one partition."""
        return FixedWindowOperator(
            step.name,
            size=self.size,
            slide=self.slide,
            offset=self.offset,
            key=step.key,
            aggregates=step.aggregates,
            allowed_lateness=allowed_lateness,
            emit=step.emit,
        )
