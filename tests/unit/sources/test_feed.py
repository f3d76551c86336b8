"""The feed source: a scenario's reports as batches, the same live, at full speed or resumed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat
from sensorstream.sources import FeedSource, SourceBatch
from sensorstream.sources.feeds import WeatherFeedSettings
from sensorstream.testing import ManualClock

FMT = ReadingFormat(
    measurements={"temperature": "float", "humidity": "float"},
    device_field="client",
    time_field="ts",
)
START = datetime(2024, 5, 12, 2, 11, 37, tzinfo=UTC)


def batches(source: FeedSource, resume: dict[int, int] | None = None) -> list[SourceBatch]:
    clock = ManualClock(START)
    return [b for b in source.read(FMT, resume or {}, clock) if b is not None]


def readings(found: list[SourceBatch]) -> pl.DataFrame:
    return pl.concat([b.readings for b in found]).select("device_id", "ts", "temperature")


def test_how_time_is_cut_into_batches_changes_no_reading() -> None:
    def feed(interval: timedelta) -> FeedSource:
        return FeedSource(
            WeatherFeedSettings(), start=START, duration=timedelta(minutes=5), interval=interval
        )

    small = batches(feed(timedelta(seconds=3)))
    large = batches(feed(timedelta(minutes=2)))
    assert len(small) > len(large) > 1
    assert readings(small).equals(readings(large))
    assert readings(small).height == 150 + 60 + 30  # 5 minutes at 2, 5 and 10 s
    first = readings(small)["ts"].min()
    assert isinstance(first, datetime)
    assert START <= first < START + timedelta(seconds=10)


def test_resuming_after_a_batch_reads_exactly_the_ones_after_it() -> None:
    source = FeedSource(
        WeatherFeedSettings(),
        start=START,
        duration=timedelta(minutes=3),
        interval=timedelta(seconds=20),
    )
    everything = batches(source)
    rest = batches(source, {0: everything[3].position})
    assert [b.position for b in rest] == [b.position for b in everything[4:]]
    assert readings(rest).equals(readings(everything[4:]))


def test_a_live_feed_is_paced_by_the_clock_and_sends_the_same_reports() -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    live = FeedSource(
        WeatherFeedSettings(devices={"fast": timedelta(seconds=1)}),
        start=start,
        live=True,
        duration=timedelta(seconds=2),
        interval=timedelta(milliseconds=250),
    )
    found = [b for b in live.read(FMT, {}, lambda: datetime.now(UTC)) if b is not None]
    assert datetime.now(UTC) >= start + timedelta(seconds=2)
    fast = FeedSource(
        WeatherFeedSettings(devices={"fast": timedelta(seconds=1)}),
        start=start,
        duration=timedelta(seconds=2),
    )
    at_once = [b for b in fast.read(FMT, {}, lambda: datetime.now(UTC)) if b is not None]
    assert readings(found).equals(readings(at_once))
    assert readings(found).height == 2


def test_broken_payloads_are_dead_letters_never_lost() -> None:
    source = FeedSource(
        WeatherFeedSettings(), start=START, duration=timedelta(hours=1), malformed_fraction=0.1
    )
    found = batches(source)
    sent = sum(b.payloads for b in found)
    dead = pl.concat([b.dead_letters for b in found])
    assert sent == 1800 + 720 + 360
    assert sent == sum(b.readings.height for b in found) + dead.height
    assert 0.07 * sent < dead.height < 0.13 * sent
    assert set(dead["reason_code"]) == {"invalid_json"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"start": datetime(2024, 1, 1)}, "time zone"),  # noqa: DTZ001 - the point of the case
        ({"duration": timedelta(0)}, "duration"),
        ({"interval": timedelta(microseconds=10)}, "interval"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        FeedSource(WeatherFeedSettings(), **settings)  # type: ignore[arg-type]


def test_a_live_feed_behind_the_clock_takes_what_is_due_at_once() -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    settings = WeatherFeedSettings()

    def feed(live: bool) -> FeedSource:
        return FeedSource(
            settings,
            start=start,
            live=live,
            duration=timedelta(minutes=10),
            interval=timedelta(seconds=1) if live else None,
        )

    now = lambda: datetime.now(UTC)  # noqa: E731 - the real clock, for a live feed
    caught_up = [b for b in feed(live=True).read(FMT, {}, now) if b is not None]
    assert len(caught_up) <= 2, "ten minutes already due come in one batch, not 600"
    at_once = [b for b in feed(live=False).read(FMT, {}, now) if b is not None]
    assert readings(caught_up).equals(readings(at_once))
    # Positioned at its last batch: resuming after it regenerates what followed.
    first = caught_up[0]
    rest = [b for b in feed(live=True).read(FMT, {0: first.position}, now) if b is not None]
    assert readings([first, *rest]).equals(readings(at_once))
