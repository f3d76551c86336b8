"""Windows as YAML writes them (``{type: tumbling, size: 1m}``), for window steps and joins."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from sensorstream.durations import Duration
from sensorstream.engine.windows import HoppingWindow, SessionWindow, TumblingWindow, Window
from sensorstream.errors import ConfigError, SensorstreamError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSpec(_Model):
    """A window declaration as YAML writes it.

    ``{type: tumbling, size: 1m}``, ``{type: hopping, size: 5m, slide: 1m}``,
    ``{type: session, gap: 30s}``.
    """

    type: Literal["tumbling", "hopping", "session"]
    size: Duration | None = None
    slide: Duration | None = None
    gap: Duration | None = None
    offset: Duration | None = None

    def to_window(self) -> Window:
        """The engine-side window declaration."""
        try:
            return self._build()
        except SensorstreamError as error:
            raise ValueError(str(error)) from None

    def _build(self) -> Window:
        offset = self.offset or timedelta(0)
        if self.type == "tumbling":
            return TumblingWindow(size=_required(self.size, "size", self.type), offset=offset)
        if self.type == "hopping":
            return HoppingWindow(
                size=_required(self.size, "size", self.type),
                slide=_required(self.slide, "slide", self.type),
                offset=offset,
            )
        return SessionWindow(gap=_required(self.gap, "gap", self.type))


def _required(value: Any, name: str, kind: str) -> Any:
    if value is None:
        msg = f"a {kind} window needs {name!r}"
        raise ConfigError(msg)
    return value
