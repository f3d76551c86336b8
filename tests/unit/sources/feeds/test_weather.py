"""The weather stations send the PyFlink document's payloads at its rates."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import polars as pl

from sensorstream.sources.feed import payload_lines
from sensorstream.sources.feeds import WeatherFeedSettings
from sensorstream.sources.feeds.base import KEY

SECOND = 1_000_000
HOUR = 3600 * SECOND


def test_each_station_reports_at_its_documented_period() -> None:
    reports = WeatherFeedSettings().build().reports(0, HOUR, seed=1)
    counts = dict(reports.group_by("client").len().iter_rows())
    assert counts == {"device1": 1800, "device2": 720, "device3": 360}
    assert WeatherFeedSettings().build().rate() == 0.5 + 0.2 + 0.1


def test_the_payload_is_the_documents_field_for_field() -> None:
    reports = (
        WeatherFeedSettings().build().reports(1_715_480_000 * SECOND, 1_715_480_060 * SECOND, 1)
    )
    lines = [json.loads(line) for line in payload_lines(reports).splitlines()]
    assert lines, "a minute has reports"
    for line in lines:
        assert list(line) == ["client", "ts", "temperature", "humidity"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line["ts"])  # no zone
        assert 0 <= line["temperature"] <= 35
        assert 40 <= line["humidity"] <= 90
        assert round(line["temperature"], 2) == line["temperature"]
    assert reports[KEY].to_list() == [line["client"] for line in lines]


def test_stations_and_ranges_are_settings() -> None:
    settings = WeatherFeedSettings(
        devices={"roof": timedelta(seconds=1)}, temperature=(-10.0, -5.0)
    )
    reports = settings.build().reports(0, 10 * SECOND, seed=0)
    assert reports["client"].unique().to_list() == ["roof"]
    assert reports.height == 10
    assert reports.select(pl.col("temperature").is_between(-10, -5).all()).item()
