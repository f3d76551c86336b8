"""The doors of the IoT streaming analytics design: its payloads, its rates, its disruption."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from pydantic import ValidationError

from sensorstream.readings import ReadingFormat
from sensorstream.sources import FeedSource
from sensorstream.sources.feed import payload_lines
from sensorstream.sources.feeds import AccessDevicesSettings, AccessEventsSettings
from sensorstream.sources.feeds.access import DISTRICTS, doors
from sensorstream.sources.feeds.base import DUE, KEY
from sensorstream.testing import ManualClock

SECOND = 1_000_000
MINUTE = 60 * SECOND
ORIGIN = 1_700_000_000 * SECOND


def lines(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [json.loads(line) for line in payload_lines(frame).splitlines()]


def announcements(low: int, high: int, **settings: object) -> pl.DataFrame:
    feed = AccessDevicesSettings.model_validate(settings).build().starting_at(ORIGIN)
    return feed.reports(low, high, seed=0)


def events(low: int, high: int, seed: int = 0, **settings: object) -> pl.DataFrame:
    feed = AccessEventsSettings.model_validate(settings).build().starting_at(ORIGIN)
    return feed.reports(low, high, seed)


def notification(frame: pl.DataFrame) -> pl.Series:
    return frame["payload"].struct.field("notificationName")


def test_an_announcement_is_the_documents_nested_payload_with_its_time() -> None:
    sent = lines(announcements(ORIGIN, ORIGIN + 1))
    assert len(sent) == 1000  # the document's 1,000 doors, all announced at the start
    for line in sent:
        assert list(line) == ["deviceId", "payload", "timestamp"]
        payload = line["payload"]
        assert isinstance(payload, dict)
        location = payload["location"]
        assert list(location) == ["countryCode", "region", "city", "loc", "timezone"]
        assert (location["countryCode"], location["city"]) == ("CH", "Zürich")
        assert location["timezone"] == "Europe/Zurich"
        (south, north), (west, east) = DISTRICTS[location["region"]]
        lat, lon = (float(part) for part in location["loc"].split(","))
        assert south <= lat <= north
        assert west <= lon <= east
        assert uuid.UUID(str(line["deviceId"])).version == 4
        assert line["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert len({line["deviceId"] for line in sent}) == 1000


def test_doors_spread_over_every_district() -> None:
    per_district = doors(1000).frame().group_by("district").len()
    assert set(per_district["district"]) == set(DISTRICTS)
    smallest = per_district["len"].min()
    assert isinstance(smallest, int)
    assert smallest >= 50  # about 83 each


def test_each_door_announces_itself_again_every_few_minutes() -> None:
    sent = announcements(ORIGIN, ORIGIN + 10 * MINUTE)
    per_door = sent.group_by(KEY).len()["len"]
    assert per_door.min() == per_door.max() == 3  # at the start, then twice in 10 minutes
    late = announcements(ORIGIN + 20 * MINUTE, ORIGIN + 25 * MINUTE)
    assert late[KEY].n_unique() == 1000  # a pipeline that joins late learns every door
    assert AccessDevicesSettings().build().rate() == pytest.approx(1000 / 300)


def test_nothing_is_announced_before_the_start() -> None:
    assert announcements(ORIGIN - 10 * MINUTE, ORIGIN).is_empty()


def test_an_event_is_the_documents_operating_notification() -> None:
    sent = lines(events(ORIGIN, ORIGIN + 10 * SECOND))
    assert sent
    known = set(doors(1000).ids)
    for line in sent:
        assert list(line) == ["deviceId", "messageName", "payload", "timestamp"]
        assert line["messageName"] == "operatingNotification"
        payload = line["payload"]
        assert isinstance(payload, dict)
        assert list(payload) == ["notificationName", "eventTimestamp"]
        assert payload["notificationName"] in ("accessGranted", "accessRejected")
        assert payload["eventTimestamp"] == line["timestamp"]
        assert line["deviceId"] in known  # the doors the devices feed announces


def test_events_come_at_a_steady_rate_after_the_doors_are_announced() -> None:
    sent = events(ORIGIN, ORIGIN + MINUTE)
    assert sent.height == 58 * 100  # 100 a second, from 2 s after the start
    assert sent[DUE].min() == ORIGIN + 2 * SECOND
    assert sent[DUE].diff().drop_nulls().unique().to_list() == [10_000]
    assert sent[KEY].n_unique() > 900  # random doors, as the document's producer picks them


def test_about_one_in_a_hundred_is_rejected_without_a_disruption() -> None:
    sent = events(ORIGIN, ORIGIN + 20 * MINUTE, disrupt=None)
    share = (notification(sent) == "accessRejected").mean()
    assert isinstance(share, float)
    assert 0.008 < share < 0.012


def with_district(frame: pl.DataFrame) -> pl.DataFrame:
    city = doors(1000).frame().select(pl.col("deviceId").alias(KEY), "district")
    return frame.join(city, on=KEY, how="left").with_columns(
        (notification(frame) == "accessRejected").alias("rejected")
    )


def test_a_disrupted_district_rejects_during_the_disruption_only() -> None:
    sent = with_district(events(ORIGIN, ORIGIN + 8 * MINUTE, disrupt="Wiedikon"))
    begins, ends = ORIGIN + 2 * MINUTE, ORIGIN + 5 * MINUTE
    during = pl.col(DUE).is_between(begins, ends, closed="left")
    shares = sent.group_by(pl.col("district") == "Wiedikon", during.alias("during")).agg(
        pl.col("rejected").mean()
    )
    share = {(struck, now): value for struck, now, value in shares.iter_rows()}
    assert share[(True, True)] > 0.95  # the document's 1:100
    assert share[(True, False)] < 0.03
    assert share[(False, True)] < 0.03
    assert share[(False, False)] < 0.03


def test_the_disruption_is_timed_from_the_start_and_needs_one() -> None:
    settings = AccessEventsSettings(
        disrupt="Enge", disrupt_after=timedelta(minutes=1), disrupt_for=timedelta(seconds=30)
    )
    assert settings.build().disruption() is None  # a feed not told its start
    window = settings.build().starting_at(ORIGIN).disruption()
    assert window == (ORIGIN + MINUTE, ORIGIN + 90 * SECOND)


def test_an_unknown_district_names_the_ones_there_are() -> None:
    with pytest.raises(ValidationError, match="no district 'Atlantis'; there are: Altstadt"):
        AccessEventsSettings(disrupt="Atlantis")


@pytest.mark.parametrize("cut", [1, 777_777, 2 * MINUTE + 5, 4 * MINUTE])
def test_how_time_is_cut_changes_no_report(cut: int) -> None:
    whole = events(ORIGIN, ORIGIN + 6 * MINUTE, seed=3, disrupt="Wiedikon")
    halves = [
        events(ORIGIN, ORIGIN + cut, seed=3, disrupt="Wiedikon"),
        events(ORIGIN + cut, ORIGIN + 6 * MINUTE, seed=3, disrupt="Wiedikon"),
    ]
    assert pl.concat(halves).equals(whole)
    devices = announcements(ORIGIN, ORIGIN + 6 * MINUTE)
    parts = [announcements(ORIGIN, ORIGIN + cut), announcements(ORIGIN + cut, ORIGIN + 6 * MINUTE)]
    assert pl.concat(parts).equals(devices)


def test_the_seed_changes_the_events_not_the_city() -> None:
    one, two = events(ORIGIN, ORIGIN + MINUTE, seed=1), events(ORIGIN, ORIGIN + MINUTE, seed=2)
    assert not one[KEY].equals(two[KEY])
    feed = AccessDevicesSettings().build().starting_at(ORIGIN)
    assert feed.reports(ORIGIN, ORIGIN + 1, 1).equals(feed.reports(ORIGIN, ORIGIN + 1, 2))


def test_the_feed_source_tells_the_feeds_when_the_run_starts() -> None:
    start = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
    fmt = ReadingFormat(
        measurements={"loc": "latlon"},
        device_field="deviceId",
        time_field="timestamp",
        tags=("district",),
        paths={"loc": "payload.location.loc", "district": "payload.location.region"},
    )
    source = FeedSource(AccessDevicesSettings(), start=start, duration=timedelta(minutes=1))
    found = [b for b in source.read(fmt, {}, ManualClock(start)) if b is not None]
    readings = pl.concat([b.readings for b in found])
    assert readings.filter(pl.col("ts") == start)["device_id"].n_unique() == 1000
    assert not pl.concat([b.dead_letters for b in found]).height
