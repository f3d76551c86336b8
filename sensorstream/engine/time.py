"""Time inside the engine: whole microseconds, the unit of ``ts`` and of every watermark.

>>> from datetime import timedelta
>>> micros(timedelta(seconds=1.5))
1500000
"""

from __future__ import annotations

from datetime import timedelta


def micros(delta: timedelta) -> int:
    """A timedelta in whole microseconds."""
    return delta // timedelta(microseconds=1)
