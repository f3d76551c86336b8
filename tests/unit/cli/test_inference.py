from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from sensorstream.cli.inference import infer_measurements
from sensorstream.errors import SourceError

FLOATS = {"temperature": "float", "humidity": "float"}


def test_ndjson_measurements_are_the_numeric_fields_of_the_first_line_with_content(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.ndjson"
    path.write_text(
        '\n  \n{"device_id": "a", "ts": 1, "temperature": 1.5, "humidity": 40, '
        '"room": "k", "ok": true}\n'
    )
    assert infer_measurements(path) == FLOATS


def test_csv_measurements_are_the_numeric_columns_of_its_first_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("device_id,ts,temperature,room,humidity\na,1,1.5,k,40\nb,2,,k,41\n")
    assert infer_measurements(path) == FLOATS


def test_parquet_measurements_are_the_numeric_columns_of_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pl.DataFrame(
        {"device_id": ["a"], "ts": [1], "temperature": [1.5], "room": ["k"], "humidity": [40]}
    ).write_parquet(path)
    assert infer_measurements(path) == FLOATS


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("r.ndjson.gz", b'{"device_id": "a", "ts": 1, "temperature": 1.5, "humidity": 4}\n'),
        ("r.csv.gz", b"device_id,ts,temperature,humidity\na,1,1.5,40\n"),
    ],
)
def test_a_compressed_file_is_sampled_through_its_decompressor(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(content))
    assert infer_measurements(path) == FLOATS


def test_a_file_without_numeric_fields_asks_for_a_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("device_id,ts,room\na,1,k\n")
    with pytest.raises(SourceError, match=r"r\.csv: no numeric measurements .* --pipeline"):
        infer_measurements(path)


def test_a_first_line_that_is_not_json_asks_for_a_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_text("device_id,ts\n")
    with pytest.raises(SourceError, match="the first line is not JSON; pass --pipeline"):
        infer_measurements(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"cannot read .*nope\.ndjson: no such file"):
        infer_measurements(tmp_path / "nope.ndjson")


def test_csv_rows_with_the_wrong_number_of_fields_do_not_stop_the_guess(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "device_id,ts,temperature\ndev-1,1700000000000,20.5\ndev-3,1700000003000,22.5,99\n"
    )
    assert infer_measurements(path) == {"temperature": "float"}


def test_a_gzip_file_under_a_plain_name_is_sampled_as_it_will_be_replayed(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_bytes(gzip.compress(b'{"device_id": "a", "ts": 1, "temperature": 1.5}\n'))
    assert infer_measurements(path) == {"temperature": "float"}
