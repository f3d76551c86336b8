"""The iot-kafka-spark sensors: a topic each, randrange(0, 100) every second, some twice or late."""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest
from pydantic import ValidationError

from sensorstream.sources.feed import payload_lines
from sensorstream.sources.feeds import SensorFeedSettings
from sensorstream.sources.feeds.base import DUE, EVENT, KEY

SECOND = 1_000_000
START = 1_578_928_320 * SECOND  # 2020-01-13 15:12:00 UTC, the document's request
HOUR = 3600 * SECOND


def test_a_sensor_sends_one_integer_a_second_from_0_to_99_on_whole_seconds() -> None:
    reports = SensorFeedSettings(sensor="temperature").build().reports(START, START + HOUR, 1)
    assert reports.height == 3600
    assert reports["value"].min() == 0
    assert reports["value"].max() == 99  # randrange(0, 100) never sends 100
    assert reports["value"].dtype == pl.Int64
    assert (reports["timestamp"] % 1000 == 0).all()
    assert reports["timestamp"].to_list() == list(
        range(START // 1000, (START + HOUR) // 1000, 1000)
    )
    assert SensorFeedSettings().build().rate() == 1.0


def test_the_payload_is_the_documents_value_with_its_producer_and_kafka_timestamp() -> None:
    reports = SensorFeedSettings(sensor="humidity").build().reports(START, START + 5 * SECOND, 0)
    lines = [json.loads(line) for line in payload_lines(reports).splitlines()]
    assert [list(line) for line in lines] == [["producer_id", "timestamp", "value"]] * 5
    assert {line["producer_id"] for line in lines} == {"humidity-sensor"}
    assert [line["timestamp"] for line in lines] == [START // 1000 + 1000 * i for i in range(5)]
    assert reports[KEY].to_list() == ["humidity-sensor"] * 5


def test_three_sensors_of_one_seed_send_three_different_series() -> None:
    series = [
        SensorFeedSettings(sensor=name).build().reports(START, START + 60 * SECOND, 0)["value"]
        for name in ("temperature", "humidity", "pressure")
    ]
    assert not series[0].equals(series[1])
    assert not series[1].equals(series[2])
    again = SensorFeedSettings(sensor="temperature").build().reports(START, START + 60 * SECOND, 0)
    assert again["value"].equals(series[0])


def test_some_reports_are_sent_twice_in_a_row_as_exact_repeats() -> None:
    feed = SensorFeedSettings(duplicate_fraction=0.05).build()
    reports = feed.reports(START, START + HOUR, 2)
    assert 3600 + 120 < reports.height < 3600 + 250
    payload = reports.select("producer_id", "timestamp", "value")
    assert payload.unique().height == 3600
    repeats = reports.filter(payload.is_duplicated())
    assert repeats.group_by("timestamp").len()["len"].max() == 2
    assert feed.rate() == pytest.approx(1.05)


def test_some_reports_are_sent_late_and_out_of_order_with_their_own_time() -> None:
    feed = SensorFeedSettings(delayed_fraction=0.05, max_delay=timedelta(minutes=2)).build()
    reports = feed.reports(START, START + HOUR, 4)
    late = reports.filter(pl.col(DUE) > pl.col(EVENT))
    assert 120 < late.height < 250
    assert (late["timestamp"] * 1000 == late[EVENT]).all()  # the time it was taken
    assert ((late[DUE] - late[EVENT]) <= 120 * SECOND).all()
    assert not reports["timestamp"].is_sorted()
    assert reports[DUE].is_sorted()


def test_a_sensor_is_refused_with_values_or_delays_that_make_no_sense() -> None:
    with pytest.raises(ValidationError, match="high end must be above"):
        SensorFeedSettings(values=(10, 10))
    with pytest.raises(ValidationError, match="needs a max_delay"):
        SensorFeedSettings(delayed_fraction=0.1)
    with pytest.raises(ValidationError, match="sensor"):
        SensorFeedSettings(sensor="a b")
