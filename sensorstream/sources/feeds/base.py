"""What a scenario feed is: simulated devices sending one stream of a reference design's payloads.

A :class:`Feed` makes the payloads whose report time falls in ``[low_us, high_us)`` (epoch
microseconds) as a frame: one column per JSON field, in the document's field names and
shapes, plus :data:`KEY` (the device, for a broker's key or topic) and :data:`DUE` (when it
is sent). Every random value is a hash of ``(seed, device, report number, field)``
(:func:`draws`), never a draw from a running generator, so a report is the same however
time is cut into batches: live in 200 ms batches, at full speed in big ones, or resumed
after a crash. That is what lets a test compute its reference from the same reports the
pipeline sees, and a benchmark replay exactly the demo's data.

Devices report on a fixed period at their own phase (:func:`schedule`); a feed may add the
imperfections its document lists as missing (duplicates: :func:`repeat_some`; reports sent
later than they were taken, so they arrive late and out of order: :func:`delay_some`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "DEVICE_INDEX",
    "DUE",
    "EVENT",
    "KEY",
    "REPORT",
    "Feed",
    "delay_some",
    "draws",
    "epoch_us",
    "iso_millis",
    "repeat_some",
    "schedule",
]

# Columns of a feed's frame that are not payload fields.
KEY, DUE = "_key", "_due_us"
DEVICE_INDEX, REPORT = "_device", "_report"
EVENT = "_event_us"  # when a report was taken, where it is sent later (delay_some)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


class Feed(ABC):
    """One stream of simulated reports: the document's payloads, a pure function of time.

    ``stream`` is the name of the pipeline stream it feeds (``readings``, ``devices``,
    ``events``). :meth:`reports` must be deterministic in its arguments and the feed's
    settings, and return rows ordered by :data:`DUE`.
    """

    kind: ClassVar[str]

    @abstractmethod
    def reports(self, low_us: int, high_us: int, seed: int) -> pl.DataFrame:
        """The reports sent in ``[low_us, high_us)``: payload fields, :data:`KEY`, :data:`DUE`."""

    def rate(self) -> float:
        """Reports a second, about (for a progress line and a publisher's pacing)."""
        return 0.0

    def starting_at(self, origin_us: int) -> Feed:
        """This feed for a run whose first report is due at ``origin_us``.

        Most feeds do not depend on when a run starts: the default is the feed itself. One
        whose story is told from the start (every device announced when the run begins, a
        disruption a few minutes in) returns a copy that knows it, still a pure function of
        time once the origin is given. Whatever sends a feed's reports (a source, a
        publisher) calls this with the event time of its first batch.
        """
        del origin_us
        return self


def _splitmix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def draws(seed: int, devices: Ints, reports: Ints, salt: int) -> Floats:
    """A uniform number in [0, 1) per (device, report): the same whenever it is drawn.

    >>> a = draws(7, np.array([0, 1]), np.array([5, 5]), salt=1)
    >>> bool((a == draws(7, np.array([0, 1]), np.array([5, 5]), salt=1)).all())
    True
    >>> bool(((0 <= a) & (a < 1)).all())
    True
    """
    with np.errstate(over="ignore"):
        key = _splitmix(
            np.full(devices.shape, (seed * 1_000_003 + salt) & ((1 << 64) - 1), np.uint64)
        )
        key = _splitmix(key ^ devices.astype(np.uint64))
        key = _splitmix(key ^ reports.astype(np.uint64))
    return (key >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def schedule(
    periods_us: Sequence[int] | Ints, phases_us: Sequence[int] | Ints, low_us: int, high_us: int
) -> pl.DataFrame:
    """Each device's reports due in ``[low_us, high_us)``, in time order.

    Device ``d`` reports at ``phases_us[d] + k * periods_us[d]`` for every integer ``k``
    (its report number). Returns the columns :data:`DEVICE_INDEX`, :data:`REPORT` and
    :data:`DUE`.

    >>> schedule([2_000_000, 5_000_000], [0, 1_000_000], 0, 6_000_000)["_due_us"].to_list()
    [0, 1000000, 2000000, 4000000]
    """
    periods = np.asarray(periods_us, dtype=np.int64)
    phases = np.asarray(phases_us, dtype=np.int64)
    first = -((phases - low_us) // periods)  # ceil((low - phase) / period)
    last = -((phases - high_us) // periods)  # exclusive
    counts = np.maximum(last - first, 0)
    devices = np.repeat(np.arange(periods.size, dtype=np.int64), counts)
    starts = np.repeat(first, counts)
    offsets = np.arange(devices.size, dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    reports = starts + offsets
    due = phases[devices] + reports * periods[devices]
    frame = pl.DataFrame({DEVICE_INDEX: devices, REPORT: reports, DUE: due})
    return frame.sort(DUE, DEVICE_INDEX)


def repeat_some(frame: pl.DataFrame, fraction: float, seed: int, salt: int) -> pl.DataFrame:
    """Each report sent a second time, right after the first, with this probability."""
    if fraction <= 0 or frame.is_empty():
        return frame
    chance = draws(seed, frame[DEVICE_INDEX].to_numpy(), frame[REPORT].to_numpy(), salt)
    again = frame.filter(pl.Series(chance < fraction))
    return pl.concat([frame, again]).sort(DUE, DEVICE_INDEX, maintain_order=True)


def delay_some(
    periods_us: Sequence[int] | Ints,
    phases_us: Sequence[int] | Ints,
    low_us: int,
    high_us: int,
    *,
    fraction: float,
    max_delay_us: int,
    seed: int,
    salt: int,
) -> pl.DataFrame:
    """Each device's reports *sent* in ``[low_us, high_us)``, some of them held back.

    As :func:`schedule`, plus :data:`EVENT`, when each report was taken. With probability
    ``fraction`` a report is sent later than that, by up to ``max_delay_us`` (whole
    milliseconds, its own draw), so it arrives out of order, or later than a pipeline's
    watermark allows. The reports taken in ``[low_us - max_delay_us, high_us)`` are drawn
    and those whose send time falls in ``[low_us, high_us)`` kept: however time is cut,
    each report is sent exactly once, at the same moment. Rows are in send order
    (:data:`DUE`, then device and report number).

    >>> sent = delay_some(
    ...     [1_000_000], [0], 0, 10_000_000, fraction=0.5, max_delay_us=3_000_000, seed=1, salt=5
    ... )
    >>> bool((sent["_due_us"] >= sent["_event_us"]).all())
    True
    """
    taken = schedule(periods_us, phases_us, low_us - max(max_delay_us, 0), high_us)
    devices, reports = taken[DEVICE_INDEX].to_numpy(), taken[REPORT].to_numpy()
    held = draws(seed, devices, reports, salt) < fraction
    delay_ms = np.ceil(draws(seed, devices, reports, salt + 1) * (max(max_delay_us, 0) // 1000))
    delay_us = np.where(held, delay_ms.astype(np.int64) * 1000, 0)
    sent = taken.with_columns(pl.col(DUE).alias(EVENT), (pl.col(DUE) + delay_us).alias(DUE))
    return sent.filter(pl.col(DUE).is_between(low_us, high_us, closed="left")).sort(
        DUE, DEVICE_INDEX, REPORT
    )


def iso_millis(moments_us: pl.Expr) -> pl.Expr:
    """Epoch microseconds as ISO 8601 UTC text with milliseconds: ``2024-05-12T02:11:37.250Z``."""
    return moments_us.cast(pl.Datetime("us", "UTC")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ")


def epoch_us(moment: datetime) -> int:
    """A zone-aware instant as microseconds since the Unix epoch."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
