"""The heartwatch feed sends the document's records at its rate; collapses are on a clock."""

from __future__ import annotations

import itertools
import json

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from sensorstream.sources.feed import payload_lines
from sensorstream.sources.feeds import HeartwatchFeedSettings
from sensorstream.sources.feeds.base import DUE, KEY
from sensorstream.sources.feeds.heartwatch import ZIPCODES, historical_ranges

SECOND = 1_000_000
START = 1_700_000_000 * SECOND  # 40 s before an even minute


def test_20000_users_send_16000_messages_a_second_together() -> None:
    feed = HeartwatchFeedSettings().build()
    reports = feed.reports(START, START + 5 * SECOND, seed=0)
    assert feed.rate() == 16_000.0
    assert reports.height == 80_000
    per_user = reports.group_by("user_id").len()
    assert per_user.height == 20_000
    assert set(per_user["len"]) == {4}, "every user once every 1.25 s"
    per_second = reports.group_by(pl.col(DUE) // SECOND).len()["len"]
    assert set(per_second) == {16_000}, "a steady stream"


def test_the_record_is_the_documents_realtime_value_with_the_kafka_timestamp() -> None:
    reports = HeartwatchFeedSettings().build().reports(START, START + SECOND, seed=3)
    lines = [json.loads(line) for line in payload_lines(reports).splitlines()]
    for line, due in zip(lines[:500], reports[DUE], strict=False):
        assert list(line) == [
            "user_id",
            "zipcode",
            "latitude",
            "longitude",
            "heart_rate",
            "timestamp",
        ]
        assert isinstance(line["user_id"], str)
        assert isinstance(line["zipcode"], int)
        assert isinstance(line["heart_rate"], int)
        assert line["timestamp"] == due // 1000
    assert reports[KEY].to_list() == [line["user_id"] for line in lines]
    assert reports["latitude"].is_between(39, 41).all()
    assert reports["longitude"].is_between(-75, -73).all()
    assert set(reports["zipcode"]) <= set(ZIPCODES)
    assert len(set(ZIPCODES)) == len(ZIPCODES) == 200, "the document's zip codes, all of them"


def test_historical_ranges_are_the_documents_one_row_per_user_and_repeat() -> None:
    ranges = historical_ranges(20_000, seed=0)
    assert ranges["user_id"].to_list()[:3] == ["1", "2", "3"]
    assert ranges["user_id"].n_unique() == 20_000
    assert set(ranges["min_heart_rate"]) == set(range(60, 66))
    assert set(ranges["max_heart_rate"]) == set(range(94, 100))
    assert ranges.equals(historical_ranges(20_000, seed=0))
    assert not ranges.equals(historical_ranges(20_000, seed=1))
    assert historical_ranges(100, seed=0).equals(ranges.head(100)), "a user's range is its own"


def test_undisturbed_users_are_out_of_range_only_while_moving() -> None:
    settings = HeartwatchFeedSettings(users=300, rate=240)
    reports = settings.build().reports(START, START + 600 * SECOND, seed=2)
    joined = reports.join(historical_ranges(300, seed=2), on="user_id").sort("user_id", DUE)
    moved = (pl.col("latitude") != pl.col("latitude").shift()) | (
        pl.col("longitude") != pl.col("longitude").shift()
    )
    joined = joined.with_columns(moved=moved.over("user_id"))
    out = (pl.col("heart_rate") < pl.col("min_heart_rate")) | (
        pl.col("heart_rate") > pl.col("max_heart_rate")
    )
    assert joined.filter(out).height > 0.1 * joined.height, "exercising: above the range"
    assert joined.filter(out)["moved"].drop_nulls().all()
    above = (pl.col("heart_rate") > pl.col("max_heart_rate")).all()
    assert joined.filter(out).select(above).item(), "never below it"
    assert (~joined["moved"].drop_nulls()).sum() > 0.2 * joined.height, "resting: still"


def test_collapsed_users_fall_below_their_range_and_stay_put_for_the_episode() -> None:
    plain = HeartwatchFeedSettings(users=100, rate=80).build()
    down = HeartwatchFeedSettings(users=100, rate=80, collapse=("42", "7")).build()
    before = plain.reports(START, START + 240 * SECOND, seed=1)
    after = down.reports(START, START + 240 * SECOND, seed=1)
    changed = before.with_columns(
        other=after["heart_rate"], lat=after["latitude"], lon=after["longitude"]
    ).filter((pl.col("heart_rate") != pl.col("other")) | (pl.col("latitude") != pl.col("lat")))
    assert set(changed["user_id"]) == {"42", "7"}
    seconds = ((changed[DUE] - START) // SECOND).to_list()
    assert all(40 <= s < 115 or 160 <= s < 235 for s in seconds)
    ranges = historical_ranges(100, seed=1)
    for user in ("42", "7"):
        low = ranges.filter(pl.col("user_id") == user)["min_heart_rate"].item()
        episode = after.filter(
            (pl.col("user_id") == user)
            & pl.col(DUE).is_between(START + 40 * SECOND, START + 115 * SECOND, closed="left")
        )
        assert episode.height == 60  # every 1.25 s for 75 s
        assert episode["heart_rate"].is_between(low - 20, low - 8).all()
        assert episode.select("latitude", "longitude").unique().height == 1


def test_batches_cut_anywhere_add_up_to_the_whole() -> None:
    feed = HeartwatchFeedSettings(users=50, rate=40, collapse=("3",)).build()
    whole = feed.reports(START, START + 120 * SECOND, seed=4)
    cuts = np.sort(np.random.default_rng(0).integers(START, START + 120 * SECOND, 9))
    edges = [START, *cuts.tolist(), START + 120 * SECOND]
    parts = [feed.reports(low, high, seed=4) for low, high in itertools.pairwise(edges)]
    assert pl.concat(parts).equals(whole)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"collapse": "0"}, "collapse names users 1 to 20000; got 0"),
        ({"collapse": "042"}, "got 042"),
        ({"users": 10, "collapse": "11"}, "collapse names users 1 to 10; got 11"),
        ({"resting": 0.7, "exercising": 0.4}, "at most 1"),
        ({"collapse_for": "3m"}, "collapse_for must be above 0 and at most collapse_every"),
    ],
)
def test_settings_refuse_what_cannot_be(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HeartwatchFeedSettings.model_validate(changes)


def test_a_collapse_is_a_comma_separated_list_or_a_list() -> None:
    assert HeartwatchFeedSettings.model_validate({"collapse": " 42, 7 "}).collapse == ("42", "7")
    assert HeartwatchFeedSettings.model_validate({"collapse": ["9"]}).collapse == ("9",)
