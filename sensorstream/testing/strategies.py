"""Hypothesis strategies for random out-of-order streams, and cutting them into batches.

Hypothesis is only imported when a strategy is called, so the rest of
:mod:`sensorstream.testing` works without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from sensorstream.readings import DEVICE, TS
from sensorstream.testing.engine import ReadingValue

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

T = TypeVar("T")

# 2024-01-01T00:00:00Z: a whole minute, so generated streams start on every window grid.
STREAM_START_US = 1_704_067_200_000_000
_SECOND_US = 1_000_000
_QUARTER_US = _SECOND_US // 4


def split(items: Sequence[T], sizes: Iterable[int]) -> list[list[T]]:
    """Consecutive pieces of ``items`` with the given sizes; what is left over is the last piece.

    >>> split([1, 2, 3, 4, 5], [2, 0, 1])
    [[1, 2], [], [3], [4, 5]]
    """
    pieces: list[list[T]] = []
    start = 0
    for size in sizes:
        pieces.append(list(items[start : start + size]))
        start += size
    if start < len(items) or not pieces:
        pieces.append(list(items[start:]))
    return pieces


def batch_sizes(
    total: int, *, max_batches: int = 6, allow_empty: bool = True
) -> SearchStrategy[list[int]]:
    """Sizes of consecutive batches that together hold ``total`` readings.

    Args:
        total: How many readings to split.
        max_batches: The most batches to cut them into.
        allow_empty: Whether a batch may be empty (the engine must accept empty batches).

    Returns:
        A strategy of size lists summing to ``total`` (``[0]`` when ``total`` is 0).
    """
    from hypothesis import strategies as st

    @st.composite
    def sizes(draw: st.DrawFn) -> list[int]:
        drawn: list[int] = []
        left = total
        while left > 0 and len(drawn) < max_batches - 1:
            size = draw(st.integers(0 if allow_empty else 1, left))
            drawn.append(size)
            left -= size
        return [*drawn, left] if left or not drawn else drawn

    return sizes()


def reading_streams(
    *,
    devices: Sequence[str] = ("d1", "d2", "d3"),
    measurements: Sequence[str] = ("temperature", "humidity"),
    tags: Mapping[str, Sequence[str | None]] | None = None,
    max_readings: int = 30,
    max_disorder_us: int = 4 * _SECOND_US,
    max_late_us: int = 10 * _SECOND_US,
    max_far_late_us: int = 30 * _SECOND_US,
    duplicate_percent: int = 10,
    late_percent: int = 10,
    far_late_percent: int = 10,
    start_us: int = STREAM_START_US,
) -> SearchStrategy[list[dict[str, ReadingValue]]]:
    """Random out-of-order streams of readings, in arrival order.

    Event time runs forward from ``start_us`` in steps of up to three seconds, on a grid of
    whole seconds, quarter seconds or single microseconds. Each reading lags that clock by up
    to ``max_disorder_us`` (the disorder a watermark should tolerate), some by up to
    ``max_late_us`` (late, often within the allowed lateness) or ``max_far_late_us`` (late
    for good), and some repeat an earlier reading exactly (duplicates). Measurements are on
    a quarter grid and may be null, but never all at once, as in a valid reading.

    Args:
        devices: Device ids to draw from.
        measurements: Float measurement names.
        tags: Tag names with the values (None for a missing tag) to draw from; by default
            one tag ``site`` that is ``north``, ``south`` or missing.
        max_readings: The longest stream.
        max_disorder_us: The largest lag of an ordinary reading behind event time.
        max_late_us: The largest lag of a late reading.
        max_far_late_us: The largest lag of a far-late reading.
        duplicate_percent: About how many readings in a hundred are repeats.
        late_percent: About how many in a hundred lag by up to ``max_late_us``.
        far_late_percent: About how many in a hundred lag by up to ``max_far_late_us``.
        start_us: Event time at the start of the stream.

    Returns:
        A strategy of lists of rows for :func:`readings_frame`.
    """
    from hypothesis import strategies as st

    tag_values: Mapping[str, Sequence[str | None]] = (
        {"site": ("north", "south", None)} if tags is None else tags
    )
    values = st.integers(-400, 400).map(lambda quarters: quarters / 4)

    @st.composite
    def streams(draw: st.DrawFn) -> list[dict[str, ReadingValue]]:
        # Times are drawn in quarter seconds: Hypothesis draws small ranges about uniformly
        # but wide ones mostly near zero, which would make late readings rare.
        grid = draw(st.sampled_from([_SECOND_US, _QUARTER_US, 1]))

        def quarters(most_us: int) -> int:
            return draw(st.integers(0, most_us // _QUARTER_US)) * _QUARTER_US // grid * grid

        def jitter() -> int:
            return draw(st.integers(0, _QUARTER_US - 1)) if grid == 1 else 0

        count = draw(st.integers(0, max_readings))
        clock = start_us
        rows: list[dict[str, ReadingValue]] = []
        for _ in range(count):
            percentile = draw(st.integers(0, 99))
            if percentile < duplicate_percent and rows:
                rows.append(dict(draw(st.sampled_from(rows))))
                continue
            clock += quarters(3 * _SECOND_US) + jitter()
            percentile -= duplicate_percent
            if 0 <= percentile < late_percent:
                bound = max_late_us
            elif 0 <= percentile - late_percent < far_late_percent:
                bound = max_far_late_us
            else:
                bound = max_disorder_us
            row: dict[str, ReadingValue] = {
                DEVICE: draw(st.sampled_from(list(devices))),
                TS: clock - quarters(bound) - jitter(),
            }
            for name in measurements:
                row[name] = draw(st.none() | values)
            if measurements and all(row[name] is None for name in measurements):
                row[measurements[0]] = draw(values)
            for tag, choices in tag_values.items():
                row[tag] = draw(st.sampled_from(list(choices)))
            rows.append(row)
        return rows

    return streams()
