"""The packaged datasets become the weather scenario's payloads, read without pandas."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from sensorstream.errors import ConfigError
from sensorstream.readings import decode_json_lines
from sensorstream.scenarios import scenario
from sensorstream.sources.datasets import DATASETS, Dataset, dataset, weather_payloads

REPO = Path(__file__).resolve().parents[3]
# The dev install has vega_datasets; a laptop without it skips, CI must not.
needs_vega = pytest.mark.skipif(
    os.environ.get("CI", "").lower() != "true" and not importlib.util.find_spec("vega_datasets"),
    reason="vega_datasets is not installed (pip install 'sensorstream[datasets]')",
)


@needs_vega
@pytest.mark.parametrize("name", list(DATASETS))
def test_a_dataset_is_a_year_of_hourly_payloads_in_the_documents_shape(name: str) -> None:
    payloads = dataset(name).payloads()
    assert payloads.columns == ["client", "ts", "temperature"]  # no humidity in these data
    assert payloads.height == 8759  # 2010, an hour short: 03:00 on the day clocks go forward
    assert payloads["client"].unique().to_list() == [dataset(name).station]
    assert payloads["ts"].str.contains(r"^2010-\d\d-\d\d \d\d:00:00$").all()
    assert payloads["temperature"].null_count() == 0
    assert payloads["temperature"].is_between(-30, 45).all(), "degrees Celsius"
    line = json.loads(payloads.head(1).write_ndjson())
    assert list(line) == ["client", "ts", "temperature"]


def test_fahrenheit_becomes_celsius_with_two_decimals() -> None:
    csv = b"date,temp\n2010/01/01 00:00,32\n2010/01/01 01:00,39.4\n2010/01/01 02:00,212\n"
    payloads = weather_payloads(csv, "seattle", "%Y/%m/%d %H:%M")
    assert payloads["temperature"].to_list() == [0.0, 4.11, 100.0]
    assert payloads["ts"].to_list()[1] == "2010-01-01 01:00:00"


def test_a_bad_row_stays_to_become_a_dead_letter_with_its_reason() -> None:
    csv = b"date,temp\n2010/01/01 00:00,x\nsoon,40\n2010/01/01 02:00,41\n"
    payloads = weather_payloads(csv, "seattle", "%Y/%m/%d %H:%M")
    assert payloads.height == 3
    fmt = scenario("weather").spec().readings
    assert fmt is not None
    data = payloads.write_ndjson().encode()
    decoded = decode_json_lines(data, fmt.to_format(), arrived_at=datetime.now(UTC))
    assert decoded.readings.height == 1
    assert sorted(decoded.dead_letters["reason_code"].to_list()) == [
        "bad_timestamp",
        "no_measurements",
    ]


@needs_vega
def test_writing_an_unchanged_dataset_keeps_the_file_so_a_replay_can_resume(
    tmp_path: Path,
) -> None:
    path = dataset("sf-temps").write(tmp_path)
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    assert dataset("sf-temps").write(tmp_path) == path
    assert path.stat().st_mtime_ns == stamp - 10**9
    assert pl.read_ndjson(path).height == 8759
    path.write_text("changed\n")
    dataset("sf-temps").write(tmp_path)
    assert pl.read_ndjson(path).height == 8759


@needs_vega
def test_reading_a_dataset_imports_neither_pandas_nor_the_packages_loader() -> None:
    code = (
        "import sys\n"
        "from sensorstream.sources.datasets import DATASETS\n"
        "DATASETS['seattle-temps'].payloads()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'vega_datasets')))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_missing_package_says_what_to_install() -> None:
    absent = Dataset("x", "x", "no_such_package_here", "x.csv", "s", "%Y", "UTC")
    with pytest.raises(ConfigError, match=re.escape("pip install 'sensorstream[datasets]'")):
        absent.csv_bytes()


def test_an_unknown_dataset_names_the_ones_there_are() -> None:
    with pytest.raises(ConfigError, match="there are: seattle-temps, sf-temps"):
        dataset("nope")
