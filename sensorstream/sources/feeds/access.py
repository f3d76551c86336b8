"""The IoT streaming analytics design's doors: 1,000 announced on ``devices``, events on ``events``.

Two feeds share one city of doors (:func:`doors`), laid out over Zurich's districts, each
door somewhere inside its district's box. The ``devices`` feed announces every door in the
document's nested shape, with the time of the announcement beside it (a changelog needs
one; the document's producer sent each door once, with no time)::

    {
        "deviceId": "b90f632f-02a2-475b-a0bd-a4353b26fd84",
        "payload": {
            "location": {
                "countryCode": "CH",
                "region": "Wiedikon",
                "city": "Zürich",
                "loc": "47.3757424811726,8.529675964932226",
                "timezone": "Europe/Zurich",
            }
        },
        "timestamp": "2023-11-14T22:13:20.000Z",
    }

Every door is announced when the run starts, then again every ``announce_every`` at its
own phase, so a pipeline that joins late (a consumer started after the burst) still
learns them all. ``region`` is the door's district, where the document's generator wrote
the canton for every door.

The ``events`` feed sends the document's operating notifications from random doors at a
steady ``rate``, beginning two seconds after the start (the doors announced by then, as the
document's producers ran one after the other)::

    {
        "deviceId": "...",
        "messageName": "operatingNotification",
        "payload": {"notificationName": "accessGranted", "eventTimestamp": "...Z"},
        "timestamp": "...Z",
    }

A notification is ``accessRejected`` with probability ``rejected`` (the document's weights
100:1, about 1 %). With ``disrupt: Wiedikon`` the doors of that district reject with
probability ``disrupted_rejected`` (the document's 1:100) from ``disrupt_after`` after the
run's start for ``disrupt_for``, then return to normal: the network disruption the
document injects by restarting its producer with ``true``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensorstream.durations import Duration
from sensorstream.sources.feeds.base import (
    DEVICE_INDEX,
    DUE,
    KEY,
    REPORT,
    Feed,
    draws,
    iso_millis,
    schedule,
)

__all__ = [
    "DISTRICTS",
    "AccessDevicesFeed",
    "AccessDevicesSettings",
    "AccessEventsFeed",
    "AccessEventsSettings",
    "Doors",
    "doors",
]

# Zurich's districts (one quarter per Kreis, 1 to 12) as (south, north), (west, east)
# boxes in degrees, drawn around each quarter's centre. The document's disruption sits at
# 47.37, 8.52, inside Wiedikon.
DISTRICTS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "Altstadt": ((47.366, 47.378), (8.538, 8.548)),
    "Enge": ((47.352, 47.366), (8.527, 8.540)),
    "Wiedikon": ((47.358, 47.371), (8.505, 8.527)),
    "Aussersihl": ((47.371, 47.382), (8.515, 8.533)),
    "Industriequartier": ((47.383, 47.392), (8.510, 8.535)),
    "Unterstrass": ((47.383, 47.395), (8.537, 8.548)),
    "Hottingen": ((47.364, 47.374), (8.550, 8.566)),
    "Riesbach": ((47.350, 47.364), (8.548, 8.562)),
    "Altstetten": ((47.382, 47.395), (8.475, 8.500)),
    "Höngg": ((47.398, 47.408), (8.480, 8.505)),
    "Oerlikon": ((47.405, 47.415), (8.535, 8.555)),
    "Schwamendingen": ((47.400, 47.410), (8.560, 8.580)),
}
_NAMES = list(DISTRICTS)
_DISTRICT_NAMES = pl.Series(_NAMES, dtype=pl.String)
_SECOND_US = 1_000_000
_QUIET_US = 2 * _SECOND_US  # events begin this long after the start, the doors known by then
_LAYOUT_SEED = 20230615  # the city is the same whatever seed a stream's source draws with


@dataclass(frozen=True)
class Doors:
    """The city's doors, by index: id (a version-4 UUID's text), district, latitude, longitude."""

    ids: list[str]
    district: npt.NDArray[np.int64]  # index into DISTRICTS
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]

    def frame(self) -> pl.DataFrame:
        """One row per door: ``deviceId``, ``district``, ``lat``, ``lon``."""
        return pl.DataFrame(
            {
                "deviceId": self.ids,
                "district": [_NAMES[d] for d in self.district],
                "lat": self.lat,
                "lon": self.lon,
            }
        )


@cache
def doors(count: int) -> Doors:
    """``count`` doors spread evenly over the districts: the same for every feed and seed.

    >>> city = doors(3)
    >>> city.ids == doors(3).ids and len(set(city.ids)) == 3
    True
    """
    index = np.arange(count, dtype=np.int64)
    zero = np.zeros(count, np.int64)
    bits = [
        (draws(_LAYOUT_SEED, index, zero, salt=100 + part) * (1 << 32)).astype(np.uint64)
        for part in range(4)
    ]
    ids = [
        str(uuid.UUID(int=int(a) << 96 | int(b) << 64 | int(c) << 32 | int(d), version=4))
        for a, b, c, d in zip(*bits, strict=True)
    ]
    district = (draws(_LAYOUT_SEED, index, zero, salt=1) * len(_NAMES)).astype(np.int64)
    south, north = (np.array([DISTRICTS[n][0][i] for n in _NAMES]) for i in (0, 1))
    west, east = (np.array([DISTRICTS[n][1][i] for n in _NAMES]) for i in (0, 1))
    up, across = draws(_LAYOUT_SEED, index, zero, 2), draws(_LAYOUT_SEED, index, zero, 3)
    lat = south[district] + (north - south)[district] * up
    lon = west[district] + (east - west)[district] * across
    return Doors(ids, district, lat, lon)


def _door_ids(city: Doors) -> pl.Series:
    return pl.Series(city.ids, dtype=pl.String)


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


class AccessDevicesFeed(Feed):
    """The doors' announcements: all of them at the run's start, then each every few minutes."""

    kind = "access_devices"

    def __init__(self, settings: AccessDevicesSettings, origin_us: int | None = None) -> None:
        self.settings, self.origin_us = settings, origin_us
        self.city = doors(settings.doors)
        self.period_us = max(_micros(settings.announce_every), 1)
        phase = draws(
            _LAYOUT_SEED, np.arange(settings.doors), np.zeros(settings.doors, np.int64), 7
        )
        self.phases = (phase * self.period_us).astype(np.int64)

    def starting_at(self, origin_us: int) -> AccessDevicesFeed:
        """The feed of a run starting at ``origin_us``: every door is announced then."""
        return AccessDevicesFeed(self.settings, origin_us)

    def rate(self) -> float:
        """Announcements a second, once the start's burst is sent."""
        return self.settings.doors * _SECOND_US / self.period_us

    def reports(self, low_us: int, high_us: int, seed: int) -> pl.DataFrame:
        """The announcements due in ``[low_us, high_us)`` (none before the run's start)."""
        del seed  # the city does not depend on it
        count = self.settings.doors
        origin = self.origin_us
        start = low_us if origin is None else max(low_us, origin + 1)
        periods = np.full(count, self.period_us, np.int64)
        due = schedule(periods, self.phases, start, high_us) if start < high_us else None
        frames = [] if due is None else [due]
        if origin is not None and low_us <= origin < high_us:
            burst = pl.DataFrame(
                {
                    DEVICE_INDEX: np.arange(count, dtype=np.int64),
                    REPORT: np.full(count, -1, np.int64),
                    DUE: np.full(count, origin, np.int64),
                }
            )
            frames.insert(0, burst)
        if not frames:
            frames = [schedule(periods, self.phases, 0, 0)]
        sent = pl.concat(frames)
        city, index = self.city, sent[DEVICE_INDEX]
        ids = _door_ids(city).gather(index)
        location = pl.struct(
            pl.lit("CH").alias("countryCode"),
            pl.lit(_DISTRICT_NAMES.gather(pl.Series(city.district).gather(index))).alias("region"),
            pl.lit("Zürich").alias("city"),
            pl.format(
                "{},{}",
                pl.lit(pl.Series(city.lat).gather(index)),
                pl.lit(pl.Series(city.lon).gather(index)),
            ).alias("loc"),
            pl.lit("Europe/Zurich").alias("timezone"),
        )
        return sent.select(
            pl.lit(ids).alias("deviceId"),
            pl.struct(location.alias("location")).alias("payload"),
            iso_millis(pl.col(DUE)).alias("timestamp"),
            pl.lit(ids).alias(KEY),
            pl.col(DUE),
            pl.col(DEVICE_INDEX),
            pl.col(REPORT),
        )


class AccessEventsFeed(Feed):
    """Access notifications from random doors at a steady rate; a district may be disrupted."""

    kind = "access_events"

    def __init__(self, settings: AccessEventsSettings, origin_us: int | None = None) -> None:
        self.settings, self.origin_us = settings, origin_us
        self.city = doors(settings.doors)
        self.period_us = max(round(_SECOND_US / settings.rate), 1)

    def starting_at(self, origin_us: int) -> AccessEventsFeed:
        """The feed of a run starting at ``origin_us``: the disruption is timed from then."""
        return AccessEventsFeed(self.settings, origin_us)

    def rate(self) -> float:
        """Events a second, all doors together."""
        return _SECOND_US / self.period_us

    def disruption(self) -> tuple[int, int] | None:
        """When the disruption holds, ``[from_us, until_us)``; None without one or a start.

        A feed not told its start (:meth:`starting_at`) is disrupted at no time.
        """
        settings = self.settings
        if settings.disrupt is None or self.origin_us is None:
            return None
        begins = self.origin_us + _micros(settings.disrupt_after)
        return begins, begins + _micros(settings.disrupt_for)

    def reports(self, low_us: int, high_us: int, seed: int) -> pl.DataFrame:
        """The notifications sent in ``[low_us, high_us)``: event ``k`` at ``k / rate``."""
        if self.origin_us is not None:  # the doors are announced first, then events begin
            low_us = max(low_us, self.origin_us + _QUIET_US)
        due = schedule([self.period_us], [0], low_us, max(low_us, high_us))
        numbers = due[REPORT].to_numpy()
        zero = np.zeros(numbers.size, np.int64)
        door = (draws(seed, zero, numbers, salt=1) * self.settings.doors).astype(np.int64)
        chance = np.full(numbers.size, self.settings.rejected)
        window = self.disruption()
        if window is not None:
            moments = due[DUE].to_numpy()
            struck = self.city.district[door] == _NAMES.index(str(self.settings.disrupt))
            struck &= (window[0] <= moments) & (moments < window[1])
            chance[struck] = self.settings.disrupted_rejected
        rejected = draws(seed, zero, numbers, salt=2) < chance
        notification = np.where(rejected, "accessRejected", "accessGranted")
        ids = _door_ids(self.city).gather(door)
        stamp = iso_millis(pl.col(DUE))
        return due.with_columns(pl.Series(DEVICE_INDEX, door)).select(
            pl.lit(ids).alias("deviceId"),
            pl.lit("operatingNotification").alias("messageName"),
            pl.struct(
                pl.lit(pl.Series("notificationName", notification, dtype=pl.String)),
                stamp.alias("eventTimestamp"),
            ).alias("payload"),
            stamp.alias("timestamp"),
            pl.lit(ids).alias(KEY),
            pl.col(DUE),
            pl.col(DEVICE_INDEX),
            pl.col(REPORT),
        )


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    doors: int = Field(default=1000, ge=1, le=1_000_000)  # the document's 1,000


class AccessDevicesSettings(_Settings):
    """The doors' announcements: how many doors, and how often each is announced again."""

    kind: Literal["access_devices"] = "access_devices"
    announce_every: Duration = Field(default="5m", validate_default=True)

    @field_validator("announce_every")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(milliseconds=1):
            msg = f"announce_every must be at least 1ms, got {value}"
            raise ValueError(msg)
        return value

    def build(self) -> AccessDevicesFeed:
        """The feed these settings describe."""
        return AccessDevicesFeed(self)


class AccessEventsSettings(_Settings):
    """The doors' notifications: rate, rejected share, and the disruption of one district."""

    kind: Literal["access_events"] = "access_events"
    rate: float = Field(default=100.0, gt=0, le=1_000_000)  # events a second, all doors
    rejected: float = Field(default=0.01, ge=0, le=1)
    disrupt: str | None = None  # a district, e.g. Wiedikon
    disrupt_after: Duration = Field(default="2m", validate_default=True)
    disrupt_for: Duration = Field(default="3m", validate_default=True)
    disrupted_rejected: float = Field(default=0.99, ge=0, le=1)

    @model_validator(mode="after")
    def _known_district(self) -> Self:
        if self.disrupt is not None and self.disrupt not in DISTRICTS:
            msg = f"disrupt: no district {self.disrupt!r}; there are: {', '.join(DISTRICTS)}"
            raise ValueError(msg)
        if self.disrupt_after < timedelta(0) or self.disrupt_for < timedelta(0):
            msg = "disrupt_after and disrupt_for must not be negative"
            raise ValueError(msg)
        return self

    def build(self) -> AccessEventsFeed:
        """The feed these settings describe."""
        return AccessEventsFeed(self)
