"""A scenario's reference tables are put where its pipeline reads them."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sensorstream.cli import app
from sensorstream.errors import ConfigError
from sensorstream.scenarios import scenario
from sensorstream.scenarios.tables import place_tables, write_table_file

ROWS = pl.DataFrame({"user_id": ["1", "2"], "min_heart_rate": [60, 61]})


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".ndjson"])
def test_a_table_file_is_written_once_then_only_when_its_rows_differ(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / "deep" / f"ranges{suffix}"
    assert write_table_file(path, ROWS) is True
    assert write_table_file(path, ROWS) is False
    assert write_table_file(path, ROWS.with_columns(min_heart_rate=pl.lit(59))) is True
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left"


def test_a_damaged_file_is_written_anew(tmp_path: Path) -> None:
    path = tmp_path / "ranges.parquet"
    path.write_bytes(b"not parquet")
    assert write_table_file(path, ROWS) is True
    assert pl.read_parquet(path).equals(ROWS)


def test_a_table_the_pipeline_does_not_declare_is_an_error() -> None:
    with pytest.raises(ConfigError, match="makes a table 'historical' that the pipeline"):
        place_tables({}, {"historical": ROWS}, postgres=None)


def test_a_format_it_cannot_write_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.parquet, \.csv or \.ndjson, not ranges\.json"):
        write_table_file(tmp_path / "ranges.json", ROWS)


def test_the_ranges_follow_the_feeds_users_and_seed(tmp_path: Path) -> None:
    path = tmp_path / "h.parquet"
    changes = {
        "source": {"type": "feed", "feed": {"kind": "heartwatch", "users": 30}, "seed": 5},
        "tables": {
            "historical": {
                "source": {"type": "file", "path": str(path)},
                "key": ["user_id"],
                "columns": {"min_heart_rate": "int", "max_heart_rate": "int"},
            }
        },
    }
    scenario("heartwatch").spec(changes=changes)
    written = pl.read_parquet(path)
    assert written.height == 30
    from sensorstream.sources.feeds.heartwatch import historical_ranges

    assert written.equals(historical_ranges(30, seed=5))


def test_a_scenario_without_tables_refuses_a_table_dsn() -> None:
    with pytest.raises(ConfigError, match="no reference table to put in PostgreSQL"):
        scenario("weather").spec(tables_at="postgresql://x@127.0.0.1/db")


def test_demo_table_names_what_it_could_not_reach(tmp_path: Path) -> None:
    dsn = "postgresql://nobody:secret@127.0.0.1:9/none"
    result = CliRunner().invoke(
        app, ["demo", "heartwatch", "--table", dsn, "--duration", "1s", "--no-serve"]
    )
    assert result.exit_code == 2, result.output
    assert "cannot load table 'historical' into PostgreSQL" in result.output
    assert "secret" not in result.output
    result = CliRunner().invoke(app, ["demo", "all", "--table", dsn])
    assert result.exit_code == 2
    assert "--table puts one scenario's tables in PostgreSQL" in result.output


def test_through_a_broker_the_ranges_still_come_from_the_feeds_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = scenario("heartwatch").spec(inject="42", via="kafka://127.0.0.1:19092/demo")
    assert spec.source is not None
    assert spec.source.type == "kafka"
    assert "historical" in spec.tables
    written = pl.read_parquet(tmp_path / ".sensorstream" / "heartwatch-historical.parquet")
    assert written.height == 20_000
