"""The rooms send the heatmap-alert document's records at its rate; overheating is on a clock."""

from __future__ import annotations

import json

import polars as pl
import pytest
from pydantic import ValidationError

from sensorstream.sources.feed import payload_lines
from sensorstream.sources.feeds import RoomsFeedSettings
from sensorstream.sources.feeds.base import DUE, KEY

SECOND = 1_000_000
START = 1_700_000_000 * SECOND  # 40 s before an even minute


def test_ten_sensors_send_five_readings_a_second_together() -> None:
    feed = RoomsFeedSettings().build()
    reports = feed.reports(START, START + 60 * SECOND, seed=0)
    assert feed.rate() == 5.0
    assert reports.height == 300
    counts = dict(reports.group_by("roomId").len().iter_rows())
    assert counts == {f"room{n}_{side}": 30 for n in range(1, 6) for side in ("IN", "OUT")}
    gaps = reports[DUE].diff().drop_nulls().unique().to_list()
    assert gaps == [200_000], "one reading every 200 ms: a steady 5/s on one stream"


def test_the_payload_is_the_documents_kafka_key_and_value() -> None:
    reports = RoomsFeedSettings().build().reports(START, START + 10 * SECOND, seed=3)
    lines = [json.loads(line) for line in payload_lines(reports).splitlines()]
    for line, due in zip(lines, reports[DUE], strict=True):
        assert list(line) == ["roomId", "value", "timestamp"]
        assert isinstance(line["value"], int)
        assert line["timestamp"] == due // 1000  # epoch milliseconds
    assert reports[KEY].to_list() == [line["roomId"] for line in lines]


def test_undisturbed_rooms_never_reach_the_warning_level() -> None:
    reports = RoomsFeedSettings().build().reports(START, START + 3600 * SECOND, seed=5)
    inside = reports.filter(pl.col("roomId").str.ends_with("_IN"))["value"]
    outside = reports.filter(pl.col("roomId").str.ends_with("_OUT"))["value"]
    assert (min(inside.to_list()), max(inside.to_list())) == (15, 19)
    assert min(outside.to_list()) == 2
    assert max(outside.to_list()) == 24, "OUT is sometimes the warmer side"


def test_an_overheated_room_climbs_during_the_first_30_s_of_every_even_minute() -> None:
    plain = RoomsFeedSettings().build().reports(START, START + 240 * SECOND, seed=1)
    hot = RoomsFeedSettings(overheat="room3").build().reports(START, START + 240 * SECOND, 1)
    changed = plain.with_columns(hot=hot["value"]).filter(pl.col("value") != pl.col("hot"))
    assert set(changed["roomId"]) == {"room3_IN"}
    seconds = ((changed[DUE] - START) // SECOND).to_list()
    assert min(seconds) >= 40
    assert max(seconds) < 70 or min(s for s in seconds if s >= 70) >= 160
    assert all(40 <= s < 70 or 160 <= s < 190 for s in seconds)
    episode = hot.filter(
        (pl.col("roomId") == "room3_IN") & (pl.col(DUE) >= START + 45 * SECOND)
        & (pl.col(DUE) < START + 70 * SECOND)
    )  # fmt: skip
    assert min(episode["value"].to_list()) >= 20, "past the warning level 5 s into the episode"
    late = episode.filter(pl.col(DUE) >= START + 55 * SECOND)["value"]
    assert min(late.to_list()) >= 30, "past the critical level 15 s into it"
    assert max(hot["value"].to_list()) <= 35


def test_reports_do_not_depend_on_how_time_is_cut() -> None:
    feed = RoomsFeedSettings(overheat="room1").build()
    whole = feed.reports(START, START + 100 * SECOND, seed=9)
    parts = pl.concat(
        [feed.reports(START + s * SECOND, START + (s + 7) * SECOND, 9) for s in range(0, 100, 7)]
    ).filter(pl.col(DUE) < START + 100 * SECOND)
    assert whole.equals(parts)


def test_the_overheated_room_must_be_one_of_the_rooms() -> None:
    with pytest.raises(ValidationError, match="one of room1, room2"):
        RoomsFeedSettings(overheat="kitchen")
    with pytest.raises(ValidationError, match="joined to IN/OUT"):
        RoomsFeedSettings(rooms=["room_1"])
