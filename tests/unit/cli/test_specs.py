from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sensorstream.cli.specs import default_replay_name, demo_spec, replay_spec


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("r.ndjson", "replay_r_ndjson"),
        ("r.csv", "replay_r_csv"),
        ("data/readings.parquet", "replay_readings_parquet"),
        ("Küche 1 (copy).ndjson.gz", "replay_K_che_1_copy_ndjson_gz"),
        ("...csv", "replay_csv"),
    ],
)
def test_each_replayed_file_gets_a_valid_pipeline_name_of_its_own(file: str, name: str) -> None:
    assert default_replay_name(Path(file)) == name


def test_replay_is_named_after_its_file_unless_named(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_text('{"device_id": "a", "ts": 1, "temperature": 1.5}\n')
    db = tmp_path / "s.duckdb"
    named = [
        replay_spec(path, name=name, pipeline=None, speed=None, window="1m", db=db).name
        for name in (None, "mine")
    ]
    assert named == ["replay_r_ndjson", "mine"]


def test_the_demo_rejects_a_window_of_zero() -> None:
    with pytest.raises(ValidationError, match="size must be positive"):
        demo_spec(3, "0s")
