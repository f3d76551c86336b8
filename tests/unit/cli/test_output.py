from __future__ import annotations

import io
import json

import polars as pl
import pytest

from sensorstream.cli.output import cell, print_frame
from sensorstream.errors import ConfigError


def _printed(frame: pl.DataFrame, format_name: str) -> str:
    out = io.StringIO()  # not a terminal, like a pipe
    print_frame(frame, format_name, out)
    return out.getvalue()


WIDE = pl.DataFrame(
    {
        "device_id": ["dev-1"],
        "note": ["x" * 150],
        "third": [1 / 3],
        "raw": [b"\x1b[2J\xff{"],
        "keys": [["device_id", "room"]],
    }
)


def test_a_piped_table_is_never_cut_to_80_columns_and_shows_floats_in_full() -> None:
    text = _printed(WIDE, "table")
    assert "x" * 150 in text
    assert "0.3333333333333333" in text
    assert "…" not in text


def test_a_table_shows_binary_cells_and_markup_literally() -> None:
    frame = pl.DataFrame({"device_id": ["[red]x[/red]"], "raw": [b"\x1b[2J\xff"]})
    text = _printed(frame, "table")
    assert "[red]x[/red]" in text
    assert "\\x1b[2J\\xff" in text
    assert "\x1b" not in text


def test_on_a_terminal_floats_are_rounded_for_reading() -> None:
    assert cell(1 / 3).plain == "0.333"
    assert cell(0.00001234).plain == "1.23e-05"
    assert cell(1 / 3, full_precision=True).plain == "0.3333333333333333"
    assert cell(None).plain == ""


def test_csv_has_a_header_binary_as_text_and_lists_joined() -> None:
    rows = list(_printed(WIDE, "csv").splitlines())
    assert rows[0] == "device_id,note,third,raw,keys"
    assert rows[1].startswith("dev-1,")
    assert ",0.3333333333333333," in rows[1]
    assert rows[1].endswith(',\\x1b[2J\\xff{,"device_id,room"')


def test_json_and_ndjson_read_back_to_the_same_values() -> None:
    [record] = json.loads(_printed(WIDE, "json"))
    assert record["third"] == 1 / 3
    assert record["raw"] == "\\x1b[2J\\xff{"
    assert record["keys"] == ["device_id", "room"]
    lines = _printed(WIDE, "ndjson").splitlines()
    assert [json.loads(line) for line in lines] == [record]


def test_an_unknown_format_names_the_ones_there_are() -> None:
    with pytest.raises(ConfigError, match="--format xml: not a format; choose one of table, csv"):
        _printed(WIDE, "xml")
