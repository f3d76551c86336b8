"""``sensorstream replay --dataset``: a real year of hourly temperatures through the weather job.

The datasets ship in the ``vega_datasets`` wheel. The reference is computed here from the
wheel's CSV with plain Polars: each hour's °F reading in °C, its local time (Pacific) in
UTC, alone in its 1-minute window (the weather job's window, the data hourly).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.store import Store

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("CI", "").lower() != "true"
        and not importlib.util.find_spec("vega_datasets"),
        reason="vega_datasets is not installed (pip install 'sensorstream[datasets]')",
    ),
]

REPO = Path(__file__).resolve().parents[3]
FORMATS = {"seattle-temps": "%Y/%m/%d %H:%M", "sf-temps": "%Y/%m/%d %H:%M:%S"}
STATIONS = {"seattle-temps": "seattle", "sf-temps": "san-francisco"}


def replay(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "sensorstream", "replay", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def row(output: str, label: str) -> str:
    found = re.search(rf"│\s*{re.escape(label)}\s*│\s*([^│]+?)\s*│", output)
    assert found, output
    return found.group(1)


def reference(name: str) -> tuple[pl.DataFrame, int]:
    """The stored index the weather job must give, from the CSV; and how many hours are void."""
    spec = importlib.util.find_spec("vega_datasets")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    csv = Path(next(iter(spec.submodule_search_locations))) / "_data" / f"{name}.csv"
    local = pl.read_csv(csv).select(
        pl.col("date").str.strptime(pl.Datetime("us"), FORMATS[name]).alias("local"),
        ((pl.col("temp") - 32) * 5 / 9).round(2).alias("avg_temp"),
    )
    zoned = local.with_columns(
        pl.col("local")
        .dt.replace_time_zone("America/Los_Angeles", non_existent="null", ambiguous="earliest")
        .dt.convert_time_zone("UTC")
        .alias("window_start")
    )
    void = zoned.filter(pl.col("window_start").is_null())
    kept = zoned.drop_nulls("window_start").sort("window_start")
    expected = kept.select(
        pl.lit(STATIONS[name]).alias("client"),
        pl.col("window_start").dt.date().alias("row_date"),
        pl.col("window_start").dt.time().alias("row_time"),
        "avg_temp",
        pl.lit(None, pl.Float64).alias("avg_hum"),
        pl.lit(1, pl.Int64).alias("count"),
    )
    return expected, void.height


def stored(folder: Path, pipeline: str) -> pl.DataFrame:
    with Store(folder / ".sensorstream" / "weather.duckdb") as store:
        return store.sql(
            "SELECT client, row_date, row_time, avg_temp, avg_hum, count"
            f" FROM results_{pipeline}_weather_data_1 ORDER BY window_start"
        ).with_columns(pl.col("row_time").cast(pl.Time))


def test_a_year_of_seattle_at_full_speed_equals_the_reference_from_the_csv(
    tmp_path: Path,
) -> None:
    done = replay(tmp_path, "--dataset", "seattle-temps")
    expected, void = reference("seattle-temps")
    assert void == 1, "2010-03-14 02:00 is no time in Los Angeles: clocks went 2:00 -> 3:00"
    assert row(done.stdout, "lines in") == "8,759"
    assert row(done.stdout, "accepted") == f"{expected.height:,}"
    assert row(done.stdout, "nonexistent_local_time") == "1"
    assert row(done.stdout, "all lines accounted for") == "yes"
    assert_frame_equal(stored(tmp_path, "weather_seattle_temps"), expected, check_dtypes=False)


def test_a_replay_at_recorded_speed_times_k_takes_the_recorded_time_over_k(
    tmp_path: Path,
) -> None:
    # 8,758 hours at 10^7 times the recorded pace: 3.15 s (at full speed: under a second)
    done = replay(tmp_path, "--dataset", "sf-temps", "--speed", "1e7", "--no-progress")
    wall = float(row(done.stdout, "wall time").removesuffix(" s"))
    assert 3.0 <= wall < 30
    expected, _ = reference("sf-temps")
    assert_frame_equal(stored(tmp_path, "weather_sf_temps"), expected, check_dtypes=False)
