"""Per-event models of the rule kinds' levels: plain Python, one observation at a time.

Each function takes one key's observations in event-time order, ``(ts, value)``, and
returns its judged points ``(ts, level)``, which :func:`~tests.property.rules_reference.
lifecycle` turns into transitions. Floats are computed in the engine's order (a sum from
the most recent value back, ``mean + alpha * (x - mean)``), so the levels agree to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Values = Sequence[tuple[int, float | None]]
Points = list[tuple[int, int]]


def range_levels(span: tuple[float, float] | None, values: Values) -> Points:
    """Outside ``[low, high]``; a key without a range is never judged out of it."""
    return [
        (ts, int(span is not None and value is not None and not span[0] <= value <= span[1]))
        for ts, value in values
    ]


def unchanged_levels(hold_us: int, values: Values) -> Points:
    """The current value began at least ``hold_us`` ago; a null neither changes nor confirms."""
    known: float | None = None
    since: int | None = None
    points: Points = []
    for ts, value in values:
        if value is not None and (known is None or value != known):
            known, since = value, ts
        points.append((ts, int(since is not None and ts - since >= hold_us)))
    return points


def rate_levels(per_us: int, rise: float | None, fall: float | None, values: Values) -> Points:
    """The change since the previous value, per ``per_us``, beyond ``rise`` or ``-fall``."""
    previous: tuple[int, float] | None = None
    points: Points = []
    for ts, value in values:
        assert value is not None
        level = 0
        if previous is not None and ts > previous[0]:
            change = (value - previous[1]) * per_us / (ts - previous[0])
            level = int(
                (rise is not None and change > rise) or (fall is not None and change < -fall)
            )
        points.append((ts, level))
        previous = (ts, value)
    return points


def _total(values: Sequence[float]) -> float:
    acc = 0.0
    for value in values:
        acc += value
    return acc


def zscore_levels(
    window: int, above: float | None, below: float | None, least: int, values: Values
) -> Points:
    """The z-score against the previous ``window`` values (sample stddev), once ``least``."""
    seen: list[float] = []
    points: Points = []
    for ts, value in values:
        assert value is not None
        recent = seen[::-1][:window]  # most recent first, as the engine adds them
        level = 0
        if len(recent) >= least:
            mean = _total(recent) / len(recent)
            std = math.sqrt(_total([(v - mean) * (v - mean) for v in recent]) / (len(recent) - 1))
            if std > 0:
                z = (value - mean) / std
                level = int((above is not None and z > above) or (below is not None and z < below))
        points.append((ts, level))
        seen.append(value)
    return points


def ewma_levels(alpha: float, band: float, least: int, values: Values) -> Points:
    """Outside ``band`` EW standard deviations of the EW mean before each value."""
    mean: float | None = None
    variance = 0.0
    points: Points = []
    for count, (ts, value) in enumerate(values):  # count: the values before this one
        assert value is not None
        level = 0
        if mean is None:
            mean = value
        else:
            distance = value - mean
            std = math.sqrt(variance)
            level = int(count >= least and std > 0 and abs(distance) > band * std)
            mean = mean + alpha * (value - mean)
            variance = variance + alpha * ((1 - alpha) * (distance * distance) - variance)
        points.append((ts, level))
    return points


def spike_levels(above: float | None, times: float | None, baseline: int, values: Values) -> Points:
    """Beyond ``above``, or ``times`` the mean of the previous ``baseline`` values (if > 0)."""
    seen: list[float] = []
    points: Points = []
    for ts, value in values:
        assert value is not None
        breach = above is not None and value > above
        if times is not None and len(seen) >= baseline:
            summed = _total(seen[::-1][:baseline])  # the mean's sum, compared undivided
            breach = breach or (summed > 0 and value * baseline > times * summed)
        points.append((ts, int(breach)))
        seen.append(value)
    return points


def deadman_points(timeout_us: int, times: Sequence[int], watermark: int) -> Points:
    """A silence (level 1) ``timeout_us`` after an observation with none in between, up to
    ``watermark``; each observation (level 0) ends one."""
    points: Points = []
    previous: int | None = None
    for ts in times:
        if previous is not None and ts - previous > timeout_us:
            points.append((previous + timeout_us, 1))
        points.append((ts, 0))
        previous = ts
    if previous is not None and previous + timeout_us <= watermark:
        points.append((previous + timeout_us, 1))
    return points


def processing_deadman_points(
    timeout_us: int, feed: Sequence[tuple[int, list[str]]], restored_at: int | None
) -> dict[str, Points]:
    """Per key, silences and arrivals of a processing-time deadman over rounds ``(now, keys
    heard from)``: a key heard from arrives at ``now``, after any silence since its last
    arrival; then every key not silent whose last arrival is ``timeout_us`` behind ``now``
    falls silent. The round ``restored_at`` (after a restore) first restarts every key's
    silence at its ``now``."""
    last: dict[str, int] = {}
    silent: dict[str, bool] = {}
    points: dict[str, Points] = {}
    for index, (now, heard) in enumerate(feed):
        if index == restored_at:
            last.update({key: now for key in last if not silent[key]})
        for key in dict.fromkeys(heard):
            if key in last and not silent[key] and now - last[key] > timeout_us:
                points[key].append((last[key] + timeout_us, 1))
            points.setdefault(key, []).append((now, 0))
            last[key], silent[key] = now, False
        for key in last:
            if not silent[key] and last[key] + timeout_us <= now:
                points[key].append((last[key] + timeout_us, 1))
                silent[key] = True
    return points


def anomaly_levels(model: Any, column: str, above: float, values: Values) -> Points:
    """River's model scores each value, then learns it."""
    points: Points = []
    for ts, value in values:
        assert value is not None
        x = {column: value}
        points.append((ts, int(model.score_one(x) > above)))
        model.learn_one(x)
    return points
