"""Time inside the engine: whole microseconds, and the event-time policy steps are built with.

Microseconds are the unit of ``ts`` and of every watermark; :class:`EventTime` says how
much disorder, lateness and idleness a pipeline allows.

>>> from datetime import UTC, datetime, timedelta
>>> micros(timedelta(seconds=1.5))
1500000
>>> micros_of(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
1000000
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sensorstream.errors import ConfigError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(delta: timedelta) -> int:
    """A timedelta in whole microseconds."""
    return delta // timedelta(microseconds=1)


def micros_of(moment: datetime | int) -> int:
    """A moment (an aware datetime, or already microseconds) as microseconds since the epoch."""
    if isinstance(moment, int):
        return moment
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class EventTime:
    """How event time is judged: disorder tolerated, lateness accepted, idleness allowed."""

    out_of_orderness: timedelta = timedelta(seconds=5)
    allowed_lateness: timedelta = timedelta(0)
    idle_timeout: timedelta | None = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.out_of_orderness < timedelta(0) or self.allowed_lateness < timedelta(0):
            msg = "out_of_orderness and allowed_lateness must not be negative"
            raise ConfigError(msg)
