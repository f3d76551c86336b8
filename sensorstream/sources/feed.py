"""A scenario's simulated devices as a source: a feed's reports, live or at full speed.

Batch ``i`` holds the reports sent in the event time ``[i * interval, (i + 1) * interval)``
from the Unix epoch; its position is ``i``, so resuming after it regenerates exactly the
batches that followed. A live feed behind the clock (started in the past, or after a slow
round) takes every batch already due at once, up to about a full-speed batch of reports,
positioned at the last of them. A feed's reports do not depend on how time is cut into batches
(:mod:`sensorstream.sources.feeds.base`), so a live run, a full-speed run and a resumed one
see the same readings. The payloads are real JSON lines in the reference design's shape,
decoded by :func:`~sensorstream.readings.decode_json_lines` like any device's::

    source:
      type: feed
      feed: {kind: weather}          # the scenario's devices, with its own settings
      live: true                     # paced by the clock; false: as fast as possible
      duration: 10m                  # of event time
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Literal

import polars as pl
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sensorstream.durations import Duration
from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat, decode_json_lines
from sensorstream.sources.base import Clock, Identity, Source, SourceBatch
from sensorstream.sources.feeds import FeedSettings
from sensorstream.sources.feeds.base import DEVICE_INDEX, REPORT, draws, epoch_us
from sensorstream.sources.synthetic import DEFAULT_START

__all__ = ["FeedSource", "FeedSourceSettings", "payload_lines", "wait_until"]

LIVE_INTERVAL = timedelta(milliseconds=200)
_REPORTS_PER_BATCH = 50_000
_BROKEN = 9_001  # the salt of the draw that breaks a payload


class FeedSource(Source):
    """The reports of one feed, batch after batch from ``start`` (default: now when live)."""

    name = "feed"

    def __init__(
        self,
        settings: FeedSettings,
        *,
        seed: int = 0,
        start: datetime | None = None,
        live: bool = False,
        duration: timedelta | None = None,
        interval: timedelta | None = None,
        malformed_fraction: float = 0.0,
    ) -> None:
        if start is not None and start.utcoffset() is None:
            msg = f"start must have a time zone (e.g. 2024-01-01T00:00:00Z), got {start}"
            raise ConfigError(msg)
        if duration is not None and duration <= timedelta(0):
            msg = f"duration must be above 0, got {duration}"
            raise ConfigError(msg)
        self.settings, self.feed = settings, settings.build()
        self.seed, self.start, self.live, self.duration = seed, start, live, duration
        self.malformed_fraction = malformed_fraction
        if interval is None:
            if live:
                interval = LIVE_INTERVAL
            else:
                seconds = _REPORTS_PER_BATCH / max(self.feed.rate(), 1e-9)
                interval = timedelta(seconds=round(min(3600.0, max(0.2, seconds)), 3))
        if interval < timedelta(milliseconds=1):
            msg = f"interval must be at least 1ms, got {interval}"
            raise ConfigError(msg)
        self.interval_us = interval // timedelta(microseconds=1)
        # Batches a live feed behind the clock takes at once: about as many reports as a
        # full-speed batch holds.
        span_s = min(3600.0, _REPORTS_PER_BATCH / max(self.feed.rate(), 1e-9))
        self._catch_up = max(1, int(span_s * 1e6) // self.interval_us)

    def identity(self) -> Identity:
        """The settings that generate the stream: equal settings, equal batches."""
        return {
            "feed": self.settings.model_dump(mode="json"),
            "seed": self.seed,
            "start": None if self.start is None else self.start.isoformat(),
            "live": self.live,
            "duration_us": None
            if self.duration is None
            else self.duration // timedelta(microseconds=1),
            "interval_us": self.interval_us,
            "malformed_fraction": self.malformed_fraction,
        }

    def origin_us(self, clock: Clock) -> int:
        """Event time of the first report: ``start``, else now (live) or the fixed default."""
        if self.start is not None:
            return epoch_us(self.start)
        return epoch_us(clock() if self.live else DEFAULT_START)

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Generator[SourceBatch | None, None, None]:
        """Yield batch after batch from just after batch number ``resume_after[0]``."""
        origin_us = self.origin_us(clock)
        resumed = 0 in resume_after
        first = resume_after[0] + 1 if resumed else origin_us // self.interval_us
        # A live feed started "now" cannot know when an earlier run started: it counts its
        # duration from this run's start, and resumes exactly where the checkpoint was.
        floor_us = None if resumed and self.start is None and self.live else origin_us
        end_us = None if self.duration is None else origin_us + _micros(self.duration)
        feed = self.feed.starting_at(origin_us)
        batch = first
        while True:
            last = batch
            if self.live:
                # Behind the clock (a start in the past, a slow round): every batch already
                # due comes at once, up to a bound, as a batch positioned at the last one.
                due = epoch_us(clock()) // self.interval_us - 1
                last = max(batch, min(due, batch + self._catch_up - 1))
            low, high = batch * self.interval_us, (last + 1) * self.interval_us
            low = low if floor_us is None else max(low, floor_us)
            high = high if end_us is None else min(high, end_us)
            if end_us is not None and low >= end_us:
                return
            if self.live:
                yield from wait_until(high, self.interval_us, clock)
            reports = feed.reports(low, high, self.seed)
            data = payload_lines(reports, self.malformed_fraction, self.seed)
            where = f"batch {batch}" if last == batch else f"batches {batch}-{last}"
            decoded = decode_json_lines(
                data, fmt, arrived_at=clock(), origin=f"{self.feed.kind} feed {where}"
            )
            yield SourceBatch(
                partition=0,
                position=last,
                readings=decoded.readings,
                dead_letters=decoded.dead_letters,
                payloads=decoded.payloads,
                blank=decoded.blank,
            )
            batch = last + 1


def payload_lines(reports: pl.DataFrame, malformed_fraction: float = 0.0, seed: int = 0) -> bytes:
    """A feed's reports as JSON lines, its own columns (``_key``, ``_due_us``) left out.

    With ``malformed_fraction``, that share of the lines is cut short (broken JSON, as a
    device's truncated write would be), chosen by each report's own draw.
    """
    payload = reports.select(pl.exclude(r"^_.*$"))
    if payload.is_empty():
        return b""
    data = payload.write_ndjson().encode()
    if malformed_fraction <= 0:
        return data
    chance = draws(seed, reports[DEVICE_INDEX].to_numpy(), reports[REPORT].to_numpy(), _BROKEN)
    lines = data.splitlines()
    broken = [
        line[: len(line) // 2] if c < malformed_fraction else line
        for line, c in zip(lines, chance, strict=True)
    ]
    return b"\n".join(broken) + b"\n"


def wait_until(due_us: int, step_us: int, clock: Clock) -> Iterator[None]:
    """Sleep until the clock reaches ``due_us``, yielding None whenever it is still early."""
    while (left_us := due_us - epoch_us(clock())) > 0:
        time.sleep(min(left_us, step_us) / 1e6)
        if epoch_us(clock()) < due_us:
            yield None


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


class FeedSourceSettings(BaseModel):
    """A :class:`FeedSource` as written under ``source:`` in a pipeline YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["feed"] = "feed"
    feed: FeedSettings
    seed: int = 0
    start: AwareDatetime | None = None
    live: bool = False
    duration: Duration | None = None
    interval: Duration | None = None
    malformed_fraction: float = Field(default=0.0, ge=0, le=1)

    def build(self) -> FeedSource:
        """The source these settings describe."""
        return FeedSource(
            self.feed,
            seed=self.seed,
            start=self.start,
            live=self.live,
            duration=self.duration,
            interval=self.interval,
            malformed_fraction=self.malformed_fraction,
        )
