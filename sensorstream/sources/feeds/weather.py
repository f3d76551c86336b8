"""The PyFlink weather design's devices: ``device1``/``2``/``3`` every 2, 5 and 10 seconds.

Each report is the document's payload, field for field::

    {"client": "device1", "ts": "2024-05-12 02:11:37", "temperature": 19.38, "humidity": 57.09}

``ts`` is text without a zone (the pipeline declares which zone it is in, UTC by default),
whole seconds; ``temperature`` is uniform in 0-35 C and ``humidity`` in 40-90 %, two
decimals, as the document's generator draws them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from sensorstream.durations import Duration
from sensorstream.sources.feeds.base import DEVICE_INDEX, DUE, KEY, REPORT, Feed, draws, schedule

__all__ = ["WeatherFeed", "WeatherFeedSettings"]

_SECOND_US = 1_000_000


class WeatherFeed(Feed):
    """Weather stations reporting temperature and humidity at their own periods."""

    kind = "weather"

    def __init__(self, settings: WeatherFeedSettings) -> None:
        self.settings = settings
        self.names = list(settings.devices)
        self.periods = (
            np.array(
                [
                    max(_SECOND_US, p.total_seconds() * _SECOND_US)
                    for p in settings.devices.values()
                ],
                dtype=np.int64,
            )
            // _SECOND_US
            * _SECOND_US
        )  # whole seconds, as the document's text times are
        count = len(self.names)
        phase = draws(0, np.arange(count), np.zeros(count, np.int64), salt=17)
        self.phases = (phase * self.periods / _SECOND_US).astype(np.int64) * _SECOND_US

    def rate(self) -> float:
        """Reports a second, the three stations together."""
        return float((1e6 / self.periods).sum())

    def reports(self, low_us: int, high_us: int, seed: int) -> pl.DataFrame:
        """The stations' reports due in ``[low_us, high_us)``."""
        due = schedule(self.periods, self.phases, low_us, high_us)
        devices, numbers = due[DEVICE_INDEX].to_numpy(), due[REPORT].to_numpy()
        low_t, high_t = self.settings.temperature
        low_h, high_h = self.settings.humidity
        temperature = low_t + (high_t - low_t) * draws(seed, devices, numbers, salt=1)
        humidity = low_h + (high_h - low_h) * draws(seed, devices, numbers, salt=2)
        names = pl.Series(self.names, dtype=pl.String)
        return due.select(
            pl.col(DEVICE_INDEX).replace_strict(range(len(self.names)), names).alias("client"),
            pl.col(DUE).cast(pl.Datetime("us")).dt.to_string("%Y-%m-%d %H:%M:%S").alias("ts"),
            pl.Series("temperature", temperature).round(2),
            pl.Series("humidity", humidity).round(2),
            pl.col(DEVICE_INDEX).replace_strict(range(len(self.names)), names).alias(KEY),
            pl.col(DUE),
            pl.col(DEVICE_INDEX),
            pl.col(REPORT),
        )


class WeatherFeedSettings(BaseModel):
    """The weather stations: name -> report period, and the ranges values are drawn from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["weather"] = "weather"
    devices: dict[str, Duration] = Field(
        default_factory=lambda: {"device1": "2s", "device2": "5s", "device3": "10s"},
        validate_default=True,
        min_length=1,
    )
    temperature: tuple[float, float] = (0.0, 35.0)
    humidity: tuple[float, float] = (40.0, 90.0)

    def build(self) -> WeatherFeed:
        """The feed these settings describe."""
        return WeatherFeed(self)
