"""The heatmap-alert design's rooms: 5 rooms, an IN and an OUT temperature sensor each.

The ten sensors send 5 readings a second together on one stream (each sensor every 2 s,
their phases spread evenly, so the stream is a steady 5/s). Each reading is the document's
Kafka record, its key and value in one JSON object::

    {"roomId": "room3_IN", "value": 17, "timestamp": 1700000000400}

``roomId`` is the key's ``<room>_<IN|OUT>`` (the Flink job splits it on ``_`` into room and
source), ``value`` a whole-degree temperature (the document's producer draws integers),
``timestamp`` epoch milliseconds. An IN sensor reads a uniform 15-19 C; an OUT sensor
swings around 13 C (+-9 C over ``outside_cycle``, each room at its own phase, +-2 C of
noise), so OUT is sometimes the warmer side and the heatmap shows both.

``overheat: room3`` makes that room's IN sensor climb ``overheat_climb`` C a second
from its usual reading during the first ``overheat_for`` of every ``overheat_every``
since the Unix epoch (by default the first 30 s of every even minute, UTC), up to
``overheat_peak``, then drop back: the undisturbed rooms never reach 20 C, the injected
one passes 20 (warning) within 5 s and 30 (critical) within 15 s of each episode's start.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

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

__all__ = ["SIDES", "RoomsFeed", "RoomsFeedSettings"]

SIDES = ("IN", "OUT")  # device 2r is room r's IN sensor, 2r + 1 its OUT sensor
_SECOND_US = 1_000_000
_MILLI_US = 1_000
_NOISE = 2  # C either way around an OUT sensor's swing


class RoomsFeed(Feed):
    """Ten room sensors (five rooms, IN and OUT) sending whole-degree temperatures."""

    kind = "rooms"

    def __init__(self, settings: RoomsFeedSettings) -> None:
        self.settings = settings
        self.names = [f"{room}_{side}" for room in settings.rooms for side in SIDES]
        sensors = len(self.names)
        self.period_us = round(sensors / settings.rate * _SECOND_US)
        self.phases = np.arange(sensors, dtype=np.int64) * self.period_us // sensors
        self.hot = (
            None if settings.overheat is None else 2 * settings.rooms.index(settings.overheat)
        )

    def rate(self) -> float:
        """Readings a second, all sensors together."""
        return len(self.names) * _SECOND_US / self.period_us

    def overheating(self, due_us: Ints) -> Ints:
        """Microseconds since the current overheat episode began at each instant, or -1."""
        every = _micros(self.settings.overheat_every)
        elapsed = np.mod(due_us, every)
        return np.where(elapsed < _micros(self.settings.overheat_for), elapsed, -1)

    def reports(self, low_us: int, high_us: int, seed: int) -> pl.DataFrame:
        """The sensors' readings due in ``[low_us, high_us)``."""
        periods = np.full(len(self.names), self.period_us, dtype=np.int64)
        due = schedule(periods, self.phases, low_us, high_us)
        devices, numbers = due[DEVICE_INDEX].to_numpy(), due[REPORT].to_numpy()
        moments = due[DUE].to_numpy()
        values = np.where(
            devices % 2 == 0,
            self._inside(devices, numbers, seed),
            self._outside(devices, numbers, moments, seed),
        )
        if self.hot is not None:
            elapsed = self.overheating(moments)
            climbed = np.minimum(
                float(self.settings.overheat_peak),
                values + np.floor(elapsed * self.settings.overheat_climb / _SECOND_US),
            )
            values = np.where((devices == self.hot) & (elapsed >= 0), climbed, values)
        names = pl.Series(self.names, dtype=pl.String)
        room_id = pl.col(DEVICE_INDEX).replace_strict(range(len(self.names)), names)
        return due.select(
            room_id.alias("roomId"),
            pl.Series("value", values.astype(np.int64)),
            (pl.col(DUE) // _MILLI_US).alias("timestamp"),
            room_id.alias(KEY),
            pl.col(DUE),
            pl.col(DEVICE_INDEX),
            pl.col(REPORT),
        )

    def _inside(self, devices: Ints, numbers: Ints, seed: int) -> Floats:
        low, high = self.settings.inside
        return low + np.floor(draws(seed, devices, numbers, salt=1) * (high - low + 1))

    def _outside(self, devices: Ints, numbers: Ints, moments: Ints, seed: int) -> Floats:
        low, high = self.settings.outside
        middle, swing = (low + high) / 2, (high - low) / 2 - _NOISE
        cycle = _micros(self.settings.outside_cycle)
        rooms = len(self.settings.rooms)
        turn = np.mod(moments, cycle) / cycle + (devices // 2) / rooms
        noise = np.floor(draws(seed, devices, numbers, salt=2) * (2 * _NOISE + 1)) - _NOISE
        value = np.round(middle + swing * np.sin(2 * math.pi * turn)) + noise
        clipped: Floats = np.clip(value, low, high)
        return clipped


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


class RoomsFeedSettings(BaseModel):
    """The rooms, the stream's rate, the usual temperatures and the injected overheating."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rooms"] = "rooms"
    rooms: list[str] = Field(
        default_factory=lambda: [f"room{n}" for n in range(1, 6)], min_length=1
    )
    rate: float = Field(default=5.0, gt=0, description="readings a second, all sensors")
    inside: tuple[int, int] = (15, 19)  # an IN sensor's uniform whole degrees
    outside: tuple[int, int] = (2, 24)  # an OUT sensor's span, swing and noise included
    outside_cycle: Duration = Field(default="10m", validate_default=True)
    overheat: str | None = None  # the room whose IN sensor overheats (--inject room3)
    overheat_every: Duration = Field(default="2m", validate_default=True)
    overheat_for: Duration = Field(default="30s", validate_default=True)
    overheat_climb: float = Field(default=1.0, gt=0, description="C a second")
    overheat_peak: int = 35

    @model_validator(mode="after")
    def _consistent(self) -> RoomsFeedSettings:
        for room in self.rooms:
            if not room or "_" in room:
                msg = f"a room's name is joined to IN/OUT by '_', so it has none: {room!r}"
                raise ValueError(msg)
        if len(set(self.rooms)) != len(self.rooms):
            msg = f"rooms must differ, got {self.rooms}"
            raise ValueError(msg)
        if self.overheat is not None and self.overheat not in self.rooms:
            msg = f"overheat names a room, one of {', '.join(self.rooms)}; got {self.overheat!r}"
            raise ValueError(msg)
        if not timedelta(0) < self.overheat_for <= self.overheat_every:
            msg = "overheat_for must be above 0 and at most overheat_every"
            raise ValueError(msg)
        for name, (low, high) in {"inside": self.inside, "outside": self.outside}.items():
            if low > high:
                msg = f"{name} is (low, high), got {(low, high)}"
                raise ValueError(msg)
        if self.outside[1] - self.outside[0] < 2 * _NOISE:
            msg = f"outside must span at least {2 * _NOISE} C (its noise), got {self.outside}"
            raise ValueError(msg)
        if self.outside_cycle <= timedelta(0):
            msg = "outside_cycle must be above 0"
            raise ValueError(msg)
        return self

    def build(self) -> RoomsFeed:
        """The feed these settings describe."""
        return RoomsFeed(self)
