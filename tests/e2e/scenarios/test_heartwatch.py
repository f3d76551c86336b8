"""The heartwatch scenario end to end: the join, the windows and the distress alert.

Runs as :mod:`tests.e2e.scenarios.heartwatch_reference` describes: 2,000 users at full speed
for 150 s, injected users collapsing in [40 s, 115 s); every reference comes from the
feed's own ``reports()``, record by record.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from sensorstream.scenarios import scenario
from sensorstream.sources.feeds.heartwatch import historical_ranges
from tests.e2e.scenarios.heartwatch_reference import (
    COLLAPSED,
    EPISODE,
    SECONDS,
    STILL,
    USERS,
    WINDOW,
    reference_transitions,
    reports,
    run,
    spec_in,
    stillness,
    transitions,
)


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    db = run(tmp_path_factory.mktemp("collapsed"), COLLAPSED)
    yield db
    db.close()


def test_no_alert_while_no_one_collapses(tmp_path: Path) -> None:
    db = run(tmp_path, ())
    records = stillness(reports(()))
    assert transitions(db) == [] == reference_transitions(records)
    # Each condition alone happens plenty: users out of range (exercising), users still
    # for 30 s and more (resting), so the alert is their conjunction, not either one.
    still = pl.col("still_for") >= STILL
    assert records.filter(pl.col("out_of_range"))["user_id"].n_unique() > 500
    assert records.filter(still)["user_id"].n_unique() > 500
    assert records.filter(still & pl.col("out_of_range")).is_empty()
    assert db.sql("SELECT count(*) FROM dead_letters").fetchall() == [(0,)]


def test_collapsed_users_alert_only_they_and_only_after_30_s_still(
    collapsed: duckdb.DuckDBPyConnection,
) -> None:
    expected = reference_transitions(reports(COLLAPSED))
    assert transitions(collapsed) == expected
    assert {user for user, _, _ in expected} == set(COLLAPSED)
    for user in COLLAPSED:
        states = [(state, at) for who, state, at in expected if who == user]
        assert [state for state, _ in states] == ["firing", "resolved"]
        (_, fired), (_, resolved) = states
        # Still from the episode's first record (or the one before, if it had not moved
        # visibly since): firing 30 s after that, within one report period.
        assert EPISODE[0] + STILL - 1_250_000 <= fired < EPISODE[0] + STILL + 1_250_000
        assert EPISODE[1] <= resolved < EPISODE[1] + 1_250_000, "resolved as they move on"


def test_stored_windows_equal_the_reference(collapsed: duckdb.DuckDBPyConnection) -> None:
    records = reports(COLLAPSED).with_columns(window_us=pl.col("ts") // WINDOW * WINDOW)
    expected = (
        records.group_by("user_id", "window_us")
        .agg(
            avg_heart_rate=pl.col("heart_rate").mean(),
            num_locations=pl.len(),
            heart_rate_min=pl.col("heart_rate").min(),
            heart_rate_max=pl.col("heart_rate").max(),
            out_of_range=pl.col("out_of_range").sum(),
        )
        .sort("user_id", "window_us")
    )
    got = collapsed.sql(
        "SELECT device_id AS user_id, epoch_us(window_start) AS window_us, avg_heart_rate, "
        "num_locations, heart_rate_min, heart_rate_max, out_of_range, final "
        "FROM results_heartwatch_per_user ORDER BY user_id, window_start"
    ).pl()
    assert got["final"].all()
    assert got.height == expected.height == USERS * SECONDS // 10
    for column in ("num_locations", "heart_rate_min", "heart_rate_max", "out_of_range"):
        assert got[column].cast(pl.Int64).to_list() == expected[column].cast(pl.Int64).to_list()
    assert got["avg_heart_rate"].to_list() == pytest.approx(expected["avg_heart_rate"].to_list())
    zipcodes = collapsed.sql(
        "SELECT CAST(zip AS INTEGER) AS zipcode, sum(count) AS count, sum(out_of_range) AS out "
        "FROM results_heartwatch_zipcodes GROUP BY zipcode ORDER BY zipcode"
    ).pl()
    by_zip = records.group_by("zipcode").agg(count=pl.len(), out=pl.col("out_of_range").sum())
    assert zipcodes.cast(pl.Int64).equals(by_zip.sort("zipcode").cast(pl.Int64))


def test_the_ranges_file_is_written_beside_the_store_from_the_feeds_seed(
    tmp_path: Path,
) -> None:
    spec_in(tmp_path, ())
    path = tmp_path / "historical.parquet"
    written = pl.read_parquet(path)
    assert written.equals(historical_ranges(USERS, seed=0))
    assert written.height == USERS
    before = path.stat().st_mtime_ns
    spec_in(tmp_path, ())
    assert path.stat().st_mtime_ns == before, "a file holding the rows already is left alone"


def test_the_shipped_scenario_writes_20000_users_ranges_wherever_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the store and the ranges are relative to the working folder
    spec = scenario("heartwatch").spec(
        live=False, duration=timedelta(seconds=1), changes={"api": {"serve": False}}
    )
    path = spec.tables["historical"].source.path  # type: ignore[union-attr]
    assert str(path) == ".sensorstream/heartwatch-historical.parquet"
    ranges = pl.read_parquet(tmp_path / path)
    assert ranges.equals(historical_ranges(20_000, seed=0))
    assert ranges.height == 20_000
    assert ranges["min_heart_rate"].is_between(60, 65).all()
    assert ranges["max_heart_rate"].is_between(94, 99).all()
