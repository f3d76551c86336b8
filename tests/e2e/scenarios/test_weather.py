"""The weather scenario end to end: the document's feed at full speed, stored as its index.

The reference is computed here from the feed's own ``reports()`` with plain Polars: each
report's zone-less ``ts`` read in the pipeline's zone, floored to its minute, averaged per
client. The engine's result table must equal it, column for column as the document names
them (``client``, ``row_date``, ``row_time``, ``avg_temp``, ``avg_hum``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.sources.feeds import WeatherFeedSettings
from sensorstream.sources.feeds.base import epoch_us
from sensorstream.sources.synthetic import DEFAULT_START
from sensorstream.store import Store

pytestmark = pytest.mark.e2e

DURATION = timedelta(minutes=20)
COLUMNS = ["client", "row_date", "row_time", "avg_temp", "avg_hum", "count"]


def run_weather(folder: Path, time_zone: str | None = None) -> pl.DataFrame:
    """Run the shipped weather pipeline at full speed for DURATION; its stored index."""
    changes: dict[str, Any] = {
        "sinks": [{"type": "duckdb", "path": str(folder / "weather.duckdb")}],
        "checkpoint": {"dir": str(folder / "checkpoints")},
    }
    if time_zone is not None:
        readings = yaml.safe_load(scenario("weather").text())["readings"]
        changes["readings"] = {**readings, "time_zone": time_zone}
    spec = scenario("weather").spec(live=False, duration=DURATION, changes=changes)
    summary = Runner(spec).run()
    assert summary.counters.get("accepted") == summary.counters.get("lines") > 0
    with Store(folder / "weather.duckdb") as store:
        return store.sql(
            "SELECT client, row_date, row_time, avg_temp, avg_hum, count, window_start, final"
            " FROM results_weather_weather_data_1 ORDER BY client, window_start"
        )


def reference(time_zone: str) -> pl.DataFrame:
    """The document's job computed per report from the feed: 1-minute means per client."""
    low = epoch_us(DEFAULT_START)
    reports = WeatherFeedSettings().build().reports(low, low + DURATION // timedelta(0, 0, 1), 0)
    start = (
        pl.col("ts")
        .str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S")
        .dt.replace_time_zone(time_zone)
        .dt.convert_time_zone("UTC")
        .dt.truncate("1m")
    )
    return (
        reports.group_by("client", start.alias("window_start"))
        .agg(
            pl.col("temperature").mean().alias("avg_temp"),
            pl.col("humidity").mean().alias("avg_hum"),
            pl.len().cast(pl.Int64).alias("count"),
        )
        .with_columns(
            pl.col("window_start").dt.date().alias("row_date"),
            pl.col("window_start").dt.time().alias("row_time"),
        )
        .sort("client", "window_start")
    )


def check(stored: pl.DataFrame, time_zone: str) -> None:
    expected = reference(time_zone)
    assert stored["final"].all(), "a bounded run closes every window"
    assert_frame_equal(
        stored.select(COLUMNS).with_columns(pl.col("row_time").cast(pl.Time)),
        expected.select(COLUMNS),
        check_dtypes=False,
        abs_tol=1e-9,
    )


def test_the_stored_index_has_the_documents_columns_and_equals_the_reference(
    tmp_path: Path,
) -> None:
    stored = run_weather(tmp_path)
    check(stored, "UTC")
    # three stations at 2, 5 and 10 s: 30, 12 and 6 readings in each whole minute
    whole = stored.group_by("client").agg(pl.col("count").max())
    assert dict(whole.iter_rows()) == {"device1": 30, "device2": 12, "device3": 6}


def test_the_declared_zone_of_the_zone_less_ts_moves_the_windows(tmp_path: Path) -> None:
    utc = run_weather(tmp_path / "utc")
    zurich = run_weather(tmp_path / "zurich", time_zone="Europe/Zurich")
    check(zurich, "Europe/Zurich")
    # November in Zurich is UTC+1: the same readings, their windows an hour earlier in UTC
    shifted = utc.with_columns(pl.col("window_start") - timedelta(hours=1))
    assert_frame_equal(
        zurich.select("client", "window_start", "avg_temp", "avg_hum", "count"),
        shifted.select("client", "window_start", "avg_temp", "avg_hum", "count"),
        abs_tol=1e-9,
    )
    assert zurich["row_time"].to_list() != utc["row_time"].to_list()
