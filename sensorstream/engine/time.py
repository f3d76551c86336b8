"""Time inside the engine: whole microseconds, the unit of ``ts`` and of every watermark.

>>> from datetime import UTC, datetime, timedelta
>>> micros(timedelta(seconds=1.5))
1500000
>>> micros_of(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
1000000
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(delta: timedelta) -> int:
    """A timedelta in whole microseconds."""
    return delta // timedelta(microseconds=1)


def micros_of(moment: datetime | int) -> int:
    """A moment (an aware datetime, or already microseconds) as microseconds since the epoch."""
    if isinstance(moment, int):
        return moment
    return (moment - _EPOCH) // timedelta(microseconds=1)
