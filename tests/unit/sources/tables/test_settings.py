"""Table sources as a pipeline YAML writes them: the settings, their errors, the registry."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from sensorstream.sources.tables import (
    TABLE_SOURCES,
    FileTableSettings,
    FileTableSource,
    PostgresTableSettings,
    PostgresTableSource,
    TableSourceSettings,
)

SETTINGS: TypeAdapter[FileTableSettings | PostgresTableSettings] = TypeAdapter(TableSourceSettings)
EXAMPLE = """
tables:
  doors:
    source: {type: file, path: doors.csv, refresh: {watch: true, interval: 2s}}
  ranges:
    source: {type: postgres, dsn_env: RANGES_DSN, query: "SELECT user_id, low, high, updated_at FROM ranges", refresh: {change_column: updated_at, listen: ranges_changed, interval: 30s}}
"""  # noqa: E501 - as the brief writes it


def sources() -> dict[str, Any]:
    tables: dict[str, Any] = yaml.safe_load(EXAMPLE)["tables"]
    return {name: table["source"] for name, table in tables.items()}


def test_the_example_builds_a_watched_file_and_an_incremental_listening_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANGES_DSN", "postgresql://reader@db:5432/plant")
    doors = SETTINGS.validate_python(sources()["doors"]).build("doors")
    assert isinstance(doors, FileTableSource)
    assert (doors.path, doors.format, doors.watch) == (Path("doors.csv"), "csv", True)
    assert doors.interval == timedelta(seconds=2)
    ranges = SETTINGS.validate_python(sources()["ranges"]).build("ranges")
    assert isinstance(ranges, PostgresTableSource)
    assert (ranges.change_column, ranges.listen) == ("updated_at", "ranges_changed")
    assert ranges.interval == timedelta(seconds=30)
    assert ranges.where == "db:5432/plant"


@pytest.mark.parametrize("name", ["doors", "ranges"])
def test_settings_round_trip_through_json(name: str) -> None:
    settings = SETTINGS.validate_python(sources()[name])
    dumped = SETTINGS.dump_python(settings, mode="json", by_alias=True)
    assert SETTINGS.validate_python(dumped) == settings


def test_the_registry_names_the_class_each_type_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANGES_DSN", "postgresql://reader@db/plant")
    built = {}
    for name, source in sources().items():
        settings = SETTINGS.validate_python(source)
        built[settings.type] = type(settings.build(name))
    assert built == TABLE_SOURCES


def test_a_file_schema_is_written_under_schema() -> None:
    settings = SETTINGS.validate_python(
        {"type": "file", "path": "doors.csv", "schema": {"door_id": "string", "floor": "int"}}
    )
    assert isinstance(settings, FileTableSettings)
    assert settings.build("doors").schema == {"door_id": "string", "floor": "int"}


def test_a_dsn_written_out_stays_out_of_the_repr() -> None:
    settings = PostgresTableSettings(dsn="postgresql://u:secret@db/plant", query="SELECT 1")
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"type": "ftp", "path": "x"},
            "does not match any of the expected tags: 'file', 'postgres'",
        ),
        ({"type": "file", "path": "d.csv", "refresh": {}}, "refresh needs watch: true"),
        ({"type": "file", "path": "d.csv", "schema": {"a": "text"}}, "'string', 'float', 'int'"),
        ({"type": "file", "path": "d.csv", "refresh": {"interval": "soon"}}, "invalid duration"),
        ({"type": "file", "path": "d.csv", "refresh": {"interval": "0s"}}, "must be above 0"),
        ({"type": "postgres", "query": "SELECT 1"}, "give either dsn"),
        (
            {"type": "postgres", "dsn": "postgresql://db/x", "dsn_env": "X", "query": "SELECT 1"},
            "give either dsn",
        ),
        (
            {
                "type": "postgres",
                "dsn": "postgresql://db/x",
                "query": "SELECT 1",
                "refresh": {"change_column": "updated_at"},
            },
            "refresh needs an interval, a listen channel, or both",
        ),
        (
            {"type": "postgres", "dsn": "postgresql://db/x", "sql": "SELECT 1"},
            "sql\n  Extra inputs",
        ),
    ],
)
def test_invalid_settings_say_what_is_wrong(source: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        SETTINGS.validate_python(source)
    assert message in str(raised.value)


def test_the_docs_tables_examples_are_valid_settings() -> None:
    text = (Path(__file__).parents[4] / "docs" / "inputs.md").read_text(encoding="utf-8")
    found = 0
    for block in re.findall(r"```yaml\n(tables:.*?)```", text, flags=re.DOTALL):
        for table in yaml.safe_load(block)["tables"].values():
            SETTINGS.validate_python(table["source"])
            found += 1
    assert found >= 5
