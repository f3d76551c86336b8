"""HeartWatch's wearers: each user's location and heart rate, and their historical ranges.

20,000 users (the document's historical table has one row per user) send together about
16,000 messages a second (the document's figure, read as a rate), each user every
``users / rate`` seconds at a phase of its own, so the stream is steady. Each message is
the document's real-time record (``schemas/realtime_value.avsc``: ``user_id`` a string,
``zipcode`` one of its New York codes, ``latitude`` 39-41, ``longitude`` -75 to -73,
``heart_rate`` an int), with the Kafka record's timestamp beside it (KSQL's ``ROWTIME``)::

    {
        "user_id": "42",
        "zipcode": 10027,
        "latitude": 40.512345,
        "longitude": -73.912345,
        "heart_rate": 71,
        "timestamp": 1700000000125,
    }

:func:`historical_ranges` is the document's historical table (``user_id``,
``min_heart_rate`` 60-65, ``max_heart_rate`` 94-99, as in its ``historical_20000``
data), a pure function of the number of users and the seed.

Every user spends each minute (``activity_every``, its own phase) resting (still: the same
location for the whole minute, heart rate in the low part of the range), walking (moving,
in range) or exercising (moving, above the range). So an undisturbed stream has users out
of their range and users who have not moved for 30 s, never both at once.

``collapse: "42,7"`` makes those users collapse during the first ``collapse_for`` of every
``collapse_every`` since the Unix epoch (by default the first 75 s of every even minute,
UTC): from the first report of an episode their location stays where it was then and
their heart rate falls 8-20 below their minimum; at its end they walk on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensorstream.durations import Duration
from sensorstream.sources.feeds.base import (
    DEVICE_INDEX,
    DUE,
    KEY,
    REPORT,
    Feed,
    Floats,
    Ints,
    draws,
    schedule,
)

__all__ = [
    "ACTIVITIES",
    "ZIPCODES",
    "HeartwatchFeed",
    "HeartwatchFeedSettings",
    "historical_ranges",
    "user_ids",
]

# The document's 200 zip codes (its realtime schema's options), all in New York City.
ZIPCODES = (
    *range(10001, 10015), *range(10016, 10042), 10043, 10044, 10045, 10055, 10060, 10065,
    10069, 10075, 10080, 10081, 10087, 10090, 10095, *range(10101, 10127), *range(10128, 10134),
    10138, *range(10150, 10180), 10185, 10199, 10203, 10211, 10212, 10213, 10242, 10249,
    *range(10256, 10262), 10265, *range(10268, 10283), 10285, 10286, 10292,
    *range(10301, 10315), *range(10451, 10476), 10499, 10705, 11001, 11003, 11004, 11005,
    11040, 11096, *range(11101, 11105),
)  # fmt: skip
ACTIVITIES = ("resting", "walking", "exercising")
LATITUDES, LONGITUDES = (39.0, 41.0), (-75.0, -73.0)  # the document's ranges

_SECOND_US = 1_000_000
_MILLI_US = 1_000
_RADIUS = 0.005  # degrees: each user walks a loop about a kilometre across...
_LOOP_US = 20 * 60 * _SECOND_US  # ...once in 20 minutes (some 2.6 m/s)
# Salts of the draws, one per quantity.
_LOW, _HIGH, _ZIP, _LAT, _LON, _TURN, _PHASE, _SLOT, _KIND, _RATE = range(1, 11)


def user_ids(users: int) -> list[str]:
    """The users' ids as the document writes them: ``"1"`` to ``"20000"``."""
    return [str(number) for number in range(1, users + 1)]


def historical_ranges(users: int, seed: int) -> pl.DataFrame:
    """Each user's historical heart-rate range, the document's historical table.

    >>> historical_ranges(3, seed=0).columns
    ['user_id', 'min_heart_rate', 'max_heart_rate']
    """
    devices = np.arange(users, dtype=np.int64)
    zero = np.zeros(users, dtype=np.int64)
    low = 60 + np.floor(draws(seed, devices, zero, _LOW) * 6).astype(np.int64)
    high = 94 + np.floor(draws(seed, devices, zero, _HIGH) * 6).astype(np.int64)
    return pl.DataFrame(
        {"user_id": user_ids(users), "min_heart_rate": low, "max_heart_rate": high},
        schema={"user_id": pl.String, "min_heart_rate": pl.Int64, "max_heart_rate": pl.Int64},
    )


class HeartwatchFeed(Feed):
    """The users' real-time records: where they are and their heart rate."""

    kind = "heartwatch"

    def __init__(self, settings: HeartwatchFeedSettings) -> None:
        self.settings = settings
        users = settings.users
        self.period_us = max(1, round(users / settings.rate * _SECOND_US))
        self.phases = np.arange(users, dtype=np.int64) * self.period_us // users
        self.ids = pl.Series(user_ids(users), dtype=pl.String)
        self._drawn: dict[int, _Users] = {}
        self.collapsing = np.array([int(user) - 1 for user in settings.collapse], dtype=np.int64)

    def _users(self, seed: int) -> _Users:
        if seed not in self._drawn:
            self._drawn[seed] = _Users.drawn(self.settings, seed)
        return self._drawn[seed]

    def rate(self) -> float:
        """Messages a second, all users together."""
        return self.settings.users * _SECOND_US / self.period_us

    def collapsed_since(self, due_us: Ints) -> Ints:
        """When the collapse episode under way at each instant began, or -1."""
        every = _micros(self.settings.collapse_every)
        elapsed = np.mod(due_us, every)
        return np.where(elapsed < _micros(self.settings.collapse_for), due_us - elapsed, -1)

    def activity(self, devices: Ints, due_us: Ints, seed: int) -> tuple[Ints, Ints]:
        """Each report's activity (an index into :data:`ACTIVITIES`) and its slot's start."""
        slot_us = _micros(self.settings.activity_every)
        offset = self._users(seed).offset[devices]
        slot = (due_us + offset) // slot_us
        chance = draws(seed, devices, slot, _KIND)
        resting, exercising = self.settings.resting, self.settings.exercising
        kind = np.where(chance < resting, 0, np.where(chance < resting + exercising, 2, 1))
        return kind.astype(np.int64), slot * slot_us - offset

    def position(self, devices: Ints, at_us: Ints, seed: int) -> tuple[Floats, Floats]:
        """Where each user is at each instant, walking their loop (rounded to 1e-6 degrees)."""
        users = self._users(seed)
        turn = 2 * math.pi * (np.mod(at_us, _LOOP_US) / _LOOP_US + users.phase[devices])
        turn *= users.clockwise[devices]
        lat = users.latitude[devices] + _RADIUS * np.sin(turn)
        lon = users.longitude[devices] + _RADIUS * np.cos(turn) / math.cos(math.radians(40.0))
        return np.round(lat, 6), np.round(lon, 6)

    def reports(self, low_us: int, high_us: int, seed: int) -> pl.DataFrame:
        """The users' records due in ``[low_us, high_us)``."""
        periods = np.full(self.settings.users, self.period_us, dtype=np.int64)
        due = schedule(periods, self.phases, low_us, high_us)
        devices, numbers = due[DEVICE_INDEX].to_numpy(), due[REPORT].to_numpy()
        moments = due[DUE].to_numpy()
        users = self._users(seed)
        low, high = users.low[devices], users.high[devices]
        kind, slot_start = self.activity(devices, moments, seed)
        chance = draws(seed, devices, numbers, _RATE)
        # resting: min..min+15; walking: min+10..max-5; exercising: max+5..max+35.
        bottom = np.choose(kind, [low, low + 10, high + 5])
        top = np.choose(kind, [low + 15, high - 5, high + 35])
        heart = bottom + np.floor(chance * (top - bottom + 1)).astype(np.int64)
        at = np.where(kind == 0, slot_start, moments)  # a resting user stays put
        if self.collapsing.size:
            since = self.collapsed_since(moments)
            down = np.isin(devices, self.collapsing) & (since >= 0)
            heart = np.where(down, low - 20 + np.floor(chance * 13).astype(np.int64), heart)
            at = np.where(down, since, at)
        lat, lon = self.position(devices, at, seed)
        user = self.ids.gather(pl.Series(devices))
        return pl.DataFrame(
            {
                "user_id": user,
                "zipcode": users.zipcode[devices],
                "latitude": lat,
                "longitude": lon,
                "heart_rate": heart,
                "timestamp": moments // _MILLI_US,
                KEY: user,
                DUE: moments,
                DEVICE_INDEX: devices,
                REPORT: numbers,
            }
        )


@dataclass(frozen=True)
class _Users:
    """What each user keeps for good under one seed: range, home, loop, slots, zip code."""

    low: Ints
    high: Ints
    offset: Ints  # where the user's activity slots begin, within one slot
    latitude: Floats  # the centre of the user's loop
    longitude: Floats
    phase: Floats  # where on the loop the user is at the epoch, in turns
    clockwise: Floats  # 1 or -1
    zipcode: Ints

    @classmethod
    def drawn(cls, settings: HeartwatchFeedSettings, seed: int) -> _Users:
        devices = np.arange(settings.users, dtype=np.int64)
        zero = np.zeros_like(devices)

        def draw(salt: int) -> Floats:
            return draws(seed, devices, zero, salt)

        ranges = historical_ranges(settings.users, seed)
        margin = 2 * _RADIUS
        (south, north), (west, east) = LATITUDES, LONGITUDES
        zipcodes = np.asarray(ZIPCODES, dtype=np.int64)
        return cls(
            low=ranges["min_heart_rate"].to_numpy(),
            high=ranges["max_heart_rate"].to_numpy(),
            offset=np.floor(draw(_SLOT) * _micros(settings.activity_every)).astype(np.int64),
            latitude=south + margin + draw(_LAT) * (north - south - 2 * margin),
            longitude=west + margin + draw(_LON) * (east - west - 2 * margin),
            phase=draw(_PHASE),
            clockwise=np.where(draw(_TURN) < 0.5, 1.0, -1.0),
            zipcode=zipcodes[np.floor(draw(_ZIP) * zipcodes.size).astype(np.int64)],
        )


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def _is_user(text: str, users: int) -> bool:
    """Whether ``text`` is one of :func:`user_ids` (``"42"``, not ``"042"``)."""
    return text.isascii() and text.isdigit() and text[0] != "0" and int(text) <= users


class HeartwatchFeedSettings(BaseModel):
    """The users, the stream's rate, how they spend their minutes, and who collapses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["heartwatch"] = "heartwatch"
    users: int = Field(default=20_000, ge=1, le=10_000_000)
    rate: float = Field(default=16_000.0, gt=0, description="messages a second, all users")
    activity_every: Duration = Field(default="1m", validate_default=True)
    resting: float = Field(default=0.3, ge=0, le=1, description="share of minutes still")
    exercising: float = Field(default=0.2, ge=0, le=1, description="share above the range")
    collapse: tuple[str, ...] = ()  # user ids ("42,7" on the command line: --inject 42,7)
    collapse_every: Duration = Field(default="2m", validate_default=True)
    collapse_for: Duration = Field(default="75s", validate_default=True)

    @field_validator("collapse", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HeartwatchFeedSettings:
        if self.resting + self.exercising > 1:
            msg = f"resting + exercising is a share of minutes, at most 1; got {self.resting} + "
            msg += f"{self.exercising}"
            raise ValueError(msg)
        unknown = [user for user in self.collapse if not _is_user(user, self.users)]
        if unknown:
            msg = f"collapse names users 1 to {self.users}; got {', '.join(unknown)}"
            raise ValueError(msg)
        if not timedelta(0) < self.collapse_for <= self.collapse_every:
            msg = "collapse_for must be above 0 and at most collapse_every"
            raise ValueError(msg)
        if self.activity_every <= timedelta(0):
            msg = "activity_every must be above 0"
            raise ValueError(msg)
        return self

    def build(self) -> HeartwatchFeed:
        """The feed these settings describe."""
        return HeartwatchFeed(self)
