"""Reference tables from files: each format, declared schemas, and reloading on change."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.errors import ConfigError, SourceError
from sensorstream.sources.tables import ColumnType, FileTableSource
from sensorstream.testing import ManualClock
from tests.unit.sources.tables.helpers import (
    last_error,
    next_update,
    wait_for_refreshes,
    wait_until,
)

DOORS = pl.DataFrame(
    {
        "door_id": ["d1", "d2", "d3"],
        "floor": [1, 2, 2],
        "width": [0.9, 1.2, 0.8],
        "outside": [True, False, False],
    }
)
FAST = timedelta(milliseconds=20)


def write(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` in the format its suffix names."""
    writers: dict[str, Callable[[Path], None]] = {
        ".csv": frame.write_csv,
        ".parquet": frame.write_parquet,
        ".json": frame.write_json,
        ".ndjson": frame.write_ndjson,
        ".jsonl": frame.write_ndjson,
    }
    writers[path.suffix](path)
    return path


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[FileTableSource, Path]]:
    """A watched CSV table of the doors, checked every 20 ms; closed after the test."""
    path = write(DOORS, tmp_path / "doors.csv")
    table = FileTableSource("doors", path, watch=True, interval=FAST)
    yield table, path
    table.close()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json", ".ndjson", ".jsonl"])
def test_each_format_loads_the_whole_table(tmp_path: Path, suffix: str) -> None:
    clock = ManualClock(datetime(2024, 6, 1, tzinfo=UTC))
    table = FileTableSource("doors", write(DOORS, tmp_path / f"doors{suffix}"), clock=clock)
    update = table.load()
    assert_frame_equal(update.rows, DOORS)
    assert update.full
    assert update.loaded_at == clock.now
    assert table.poll() is None


def test_an_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "doors.txt"
    DOORS.write_ndjson(path)
    assert_frame_equal(FileTableSource("doors", path, "ndjson").load().rows, DOORS)


def test_a_suffix_that_names_no_format_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"table 'doors': cannot tell the format of doors\.txt"):
        FileTableSource("doors", tmp_path / "doors.txt")


def test_the_version_names_size_mtime_and_sha256(tmp_path: Path) -> None:
    path = write(DOORS, tmp_path / "doors.csv")
    os.utime(path, ns=(0, 1_717_243_200_000_000_000))
    version = FileTableSource("doors", path).load().version
    size = path.stat().st_size
    assert version.startswith(f"size={size} mtime=2024-06-01T12:00:00.000000Z sha256=")


def test_a_missing_file_at_load_is_an_error_naming_the_table(tmp_path: Path) -> None:
    table = FileTableSource("doors", tmp_path / "doors.csv")
    with pytest.raises(SourceError, match=r"table 'doors': cannot read .*doors\.csv: no such file"):
        table.load()


def test_a_file_that_is_not_its_format_is_an_error_naming_the_format(tmp_path: Path) -> None:
    path = tmp_path / "doors.parquet"
    path.write_text("door_id,floor\nd1,1\n")
    with pytest.raises(SourceError, match=r"table 'doors': cannot read .* as parquet: "):
        FileTableSource("doors", path).load()


def test_a_declared_schema_casts_each_column(tmp_path: Path) -> None:
    path = tmp_path / "doors.csv"
    path.write_text(
        "door_id,floor,width,outside,installed,note\n"
        "007,1,1,TRUE,2024-06-01T12:00:00Z,a\n"
        "008,2,0.5,false,2024-06-01T14:00:00+02:00,\n"
    )
    schema: dict[str, ColumnType] = {
        "door_id": "string",
        "floor": "int",
        "width": "float",
        "outside": "bool",
        "installed": "datetime",
    }
    rows = FileTableSource("doors", path, schema=schema).load().rows
    noon = datetime(2024, 6, 1, 12, tzinfo=UTC)
    expected = pl.DataFrame(
        {
            "door_id": ["007", "008"],
            "floor": [1, 2],
            "width": [1.0, 0.5],
            "outside": [True, False],
            "installed": [noon, noon],
            "note": ["a", None],  # undeclared: as Polars inferred it
        },
        schema_overrides={"installed": pl.Datetime("us", "UTC")},
    )
    assert_frame_equal(rows, expected)


def test_a_declared_schema_applies_to_json_values_too(tmp_path: Path) -> None:
    path = tmp_path / "doors.json"
    path.write_text('[{"door_id": 7, "floor": 1.0}, {"door_id": 8, "floor": 2.0}]')
    schema: dict[str, ColumnType] = {"door_id": "string", "floor": "int"}
    rows = FileTableSource("doors", path, schema=schema).load().rows
    assert_frame_equal(rows, pl.DataFrame({"door_id": ["7", "8"], "floor": [1, 2]}))


@pytest.mark.parametrize(
    ("content", "kind", "message"),
    [
        ("a\n1\nx\n", "int", "column 'a' of doors.csv: 'x' (row 2) is not an int"),
        ("a\n1.5\none\n", "float", "column 'a' of doors.csv: 'one' (row 2) is not a float"),
        ("a\ntrue\nyes\n", "bool", "'yes' (row 2) is not a bool: write true or false"),
        (
            "a\n2024-06-01 12:00:00\n",
            "datetime",
            "'2024-06-01 12:00:00' (row 1) is not a datetime: write ISO 8601 with a time zone",
        ),
    ],
)
def test_a_value_that_does_not_fit_its_declared_type_is_named_with_its_row(
    tmp_path: Path, content: str, kind: ColumnType, message: str
) -> None:
    path = tmp_path / "doors.csv"
    path.write_text(content)
    table = FileTableSource("doors", path, schema={"a": kind})
    with pytest.raises(SourceError, match="table 'doors': ") as raised:
        table.load()
    assert message in str(raised.value)


def test_a_fractional_number_declared_int_is_refused_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "doors.ndjson"
    path.write_text('{"floor": 1}\n{"floor": 2.5}\n')
    with pytest.raises(SourceError, match=r"column 'floor' of doors\.ndjson: 2\.5 \(row 2\)"):
        FileTableSource("doors", path, schema={"floor": "int"}).load()


def test_a_declared_column_missing_from_the_file_is_an_error(tmp_path: Path) -> None:
    path = write(DOORS, tmp_path / "doors.csv")
    table = FileTableSource("doors", path, schema={"room": "string"})
    with pytest.raises(SourceError, match=r"doors\.csv has no column 'room', which the schema"):
        table.load()


def test_a_csv_value_past_the_inferred_rows_widens_its_column(tmp_path: Path) -> None:
    path = tmp_path / "doors.csv"
    path.write_text("floor\n" + "1\n" * 20_000 + "basement\n")
    rows = FileTableSource("doors", path).load().rows
    assert rows.schema["floor"] == pl.String
    assert rows["floor"][-1] == "basement"


def test_a_changed_file_gives_exactly_one_update_with_the_new_content(
    watched: tuple[FileTableSource, Path],
) -> None:
    table, path = watched
    table.load()
    changed = DOORS.with_columns(floor=pl.col("floor") + 10)
    write(changed, path)
    update = next_update(table)
    assert update.full
    assert_frame_equal(update.rows, changed)
    wait_for_refreshes(table)
    assert table.poll() is None


def test_an_unchanged_file_gives_no_update(watched: tuple[FileTableSource, Path]) -> None:
    table, _ = watched
    table.load()
    wait_for_refreshes(table)
    assert table.poll() is None
    assert last_error(table) is None


def test_a_file_touched_but_not_changed_gives_no_update(
    watched: tuple[FileTableSource, Path],
) -> None:
    table, path = watched
    table.load()
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    wait_for_refreshes(table)
    assert table.poll() is None


def test_a_file_being_written_is_read_only_once_it_holds_still(tmp_path: Path) -> None:
    path = write(DOORS, tmp_path / "doors.csv")
    table = FileTableSource("doors", path, watch=True)  # driven by hand here: never loaded twice
    table.read_table()
    with path.open("a") as handle:
        handle.write("d4,3,")  # half a row
        handle.flush()
        assert table.read_changes() is None  # changed: seen once
        handle.write("1.0,true\n")
    assert table.read_changes() is None  # changed again since
    update = table.read_changes()  # the same as last time: it holds still
    assert update is not None
    assert update.rows["door_id"].to_list() == ["d1", "d2", "d3", "d4"]
    assert table.read_changes() is None


def test_a_missing_file_during_refresh_keeps_the_last_content_and_records_the_error(
    watched: tuple[FileTableSource, Path],
) -> None:
    table, path = watched
    table.load()
    path.unlink()
    wait_until(lambda: table.last_error is not None, "the error recorded")
    assert table.last_error is not None
    assert "table 'doors': cannot read" in table.last_error
    assert "no such file" in table.last_error
    assert table.poll() is None
    changed = DOORS.head(1)
    write(changed, path)
    assert_frame_equal(next_update(table).rows, changed)
    assert last_error(table) is None


def test_a_half_written_file_during_refresh_keeps_the_last_content_and_records_the_error(
    tmp_path: Path,
) -> None:
    path = write(DOORS, tmp_path / "doors.json")
    table = FileTableSource("doors", path, watch=True, interval=FAST)
    table.load()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # and the writer stalls
    wait_until(lambda: table.last_error is not None, "the error recorded")
    assert table.last_error is not None
    assert "cannot read" in table.last_error
    assert "as json" in table.last_error
    assert table.poll() is None
    changed = DOORS.tail(1)
    write(changed, path)
    assert_frame_equal(next_update(table).rows, changed)
    assert last_error(table) is None
    table.close()


def test_an_interval_without_watch_compares_the_content_not_the_mtime(tmp_path: Path) -> None:
    path = write(DOORS, tmp_path / "doors.csv")
    stat = path.stat()
    table = FileTableSource("doors", path, interval=FAST)
    table.load()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    wait_for_refreshes(table)
    assert table.poll() is None  # touched only
    # A rewrite of the same size that keeps the old mtime: watching would miss it.
    path.write_text(path.read_text().replace("d1", "e1"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert next_update(table).rows["door_id"].to_list() == ["e1", "d2", "d3"]
    table.close()


def test_a_table_without_refresh_never_polls_an_update(tmp_path: Path) -> None:
    path = write(DOORS, tmp_path / "doors.csv")
    table = FileTableSource("doors", path)
    table.load()
    write(DOORS.head(1), path)
    assert table.poll() is None
    assert table.refreshes is False
