"""The iot-kafka-spark design's sensors: one sensor a topic, a random integer every second.

The document runs three producers, ``temperature-sensor``, ``humidity-sensor`` and
``pressure-sensor``, each sending ``random.randrange(0, 100)`` to its own Kafka topic
(``temperature``, ``humidity``, ``pressure``) and sleeping a second. Its message is the bare
value, and the time is the Kafka record's timestamp (epoch milliseconds). As a JSON line,
with the producer's id beside them::

    {"producer_id": "temperature-sensor", "timestamp": 1578928320000, "value": 42}

A feed is one sensor, so a pipeline reads one stream (topic) per sensor. Reports are on
whole seconds, so the document's one-minute request (both ends included) counts 61 of them.

What the document lists as missing in its streaming app is made to happen here, so that a
pipeline must handle it: some reports are sent twice (``duplicate_fraction``), and some are
sent late, up to ``max_delay`` after they were taken (``delayed_fraction``), so they arrive
out of order or after the watermark has passed their window.
"""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensorstream.durations import Duration
from sensorstream.sources.feeds.base import (
    DEVICE_INDEX,
    DUE,
    EVENT,
    KEY,
    REPORT,
    Feed,
    delay_some,
    draws,
    repeat_some,
)

__all__ = ["SensorFeed", "SensorFeedSettings"]

_MILLISECOND_US = 1_000
_VALUE, _HELD, _REPEATED = 1, 2, 4  # salts of the draws (delay_some uses _HELD + 1 too)


class SensorFeed(Feed):
    """One sensor sending a random integer every ``period``, some twice, some late."""

    kind = "sensor"

    def __init__(self, settings: SensorFeedSettings) -> None:
        self.settings = settings
        self.producer_id = f"{settings.sensor}-sensor"
        # The sensor's own number, mixed into every draw's seed: three feeds of one seed
        # draw three different series (a CRC of the name is the same in every process).
        self.device = zlib.crc32(settings.sensor.encode())
        self.period_us = max(
            _MILLISECOND_US, settings.period // timedelta(milliseconds=1) * _MILLISECOND_US
        )
        self.max_delay_us = settings.max_delay // timedelta(milliseconds=1) * _MILLISECOND_US

    def rate(self) -> float:
        """Reports a second, repeats included."""
        return 1e6 / self.period_us * (1 + self.settings.duplicate_fraction)

    def reports(self, low_us: int, high_us: int, seed: int) -> pl.DataFrame:
        """The reports sent in ``[low_us, high_us)``; ``timestamp`` is when each was taken."""
        seed = seed << 32 | self.device
        sent = delay_some(
            [self.period_us],
            [0],
            low_us,
            high_us,
            fraction=self.settings.delayed_fraction,
            max_delay_us=self.max_delay_us,
            seed=seed,
            salt=_HELD,
        ).with_columns(pl.lit(self.device, pl.Int64).alias(DEVICE_INDEX))
        sent = repeat_some(sent, self.settings.duplicate_fraction, seed, salt=_REPEATED)
        low, high = self.settings.values
        value = draws(seed, sent[DEVICE_INDEX].to_numpy(), sent[REPORT].to_numpy(), salt=_VALUE)
        return sent.select(
            pl.lit(self.producer_id).alias("producer_id"),
            (pl.col(EVENT) // _MILLISECOND_US).alias("timestamp"),
            pl.Series("value", low + np.floor(value * (high - low)).astype(np.int64)),
            pl.lit(self.producer_id).alias(KEY),
            pl.col(DUE),
            pl.col(EVENT),
            pl.col(DEVICE_INDEX),
            pl.col(REPORT),
        )


class SensorFeedSettings(BaseModel):
    """One sensor: its name (the topic), its period, its values and its imperfections.

    ``values`` is ``(low, high)`` as Python's ``randrange`` takes them: ``high`` is never
    sent (the document's ``randrange(0, 100)`` sends 0 to 99).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sensor"] = "sensor"
    sensor: str = Field(default="temperature", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    period: Duration = Field(default="1s", validate_default=True)
    values: tuple[int, int] = (0, 100)
    duplicate_fraction: float = Field(default=0.0, ge=0, le=1)
    delayed_fraction: float = Field(default=0.0, ge=0, le=1)
    max_delay: Duration = Field(default="0s", validate_default=True)

    @model_validator(mode="after")
    def _coherent(self) -> SensorFeedSettings:
        if self.values[1] <= self.values[0]:
            msg = f"values: the high end must be above the low one, got {list(self.values)}"
            raise ValueError(msg)
        if self.period < timedelta(milliseconds=1):
            msg = f"period must be at least 1ms, got {self.period}"
            raise ValueError(msg)
        if self.delayed_fraction > 0 and self.max_delay < timedelta(milliseconds=1):
            msg = "delayed_fraction needs a max_delay of at least 1ms (how late a report may be)"
            raise ValueError(msg)
        return self

    def build(self) -> SensorFeed:
        """The feed these settings describe."""
        return SensorFeed(self)
