from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from pydantic import ValidationError
from rich.console import Console

from sensorstream.readings import TS_TYPE, ReadingFormat, dead_letters
from sensorstream.sinks import ConsoleSink, ConsoleSinkSettings
from sensorstream.sinks.base import PipelineInfo, SinkBatch, StepInfo

T0 = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
INFO = PipelineInfo(
    "fleet",
    (StepInfo("per_device", ("device_id",), ("temperature_mean", "count")),),
    ReadingFormat(measurements={"temperature": "float"}).canonical_schema(),
)


def _results(
    devices: list[str | None],
    minutes: list[int],
    *,
    revision: int = 0,
    final: bool = True,
    op: str = "upsert",
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": devices,
            "window_start": [T0 + timedelta(minutes=m) for m in minutes],
            "window_end": [T0 + timedelta(minutes=m + 1) for m in minutes],
            "temperature_mean": [21.456] * len(devices),
            "count": [1200] * len(devices),
            "revision": [revision] * len(devices),
            "final": [final] * len(devices),
            "_op": [op] * len(devices),
        },
        schema_overrides={"window_start": TS_TYPE, "window_end": TS_TYPE, "count": pl.UInt32},
    )


def _printed(sink: ConsoleSink, *batches: SinkBatch) -> str:
    sink.open(INFO)
    for batch in batches:
        sink.write(batch)
    assert isinstance(sink.console.file, io.StringIO)
    return sink.console.file.getvalue()


def _sink(*, results_only: bool = True, max_rows: int = 20, width: int = 100) -> ConsoleSink:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    return ConsoleSink(results_only, max_rows, console=console)


def test_results_of_one_window_print_the_window_once_in_the_title() -> None:
    text = _printed(_sink(), SinkBatch(0, 1, results={"per_device": _results(["b", "a"], [0, 0])}))
    lines = text.splitlines()
    assert lines[0] == "per_device  2024-03-05 12:00:00 → 12:01:00  2 rows"
    assert "window" not in text
    assert "status" not in text  # every row final: nothing worth a column
    rows = [line.split() for line in lines[3:5]]
    assert rows == [["a", "21.46", "1,200"], ["b", "21.46", "1,200"]]


def test_results_of_several_windows_get_a_window_column() -> None:
    text = _printed(_sink(), SinkBatch(0, 1, results={"per_device": _results(["a", "a"], [1, 0])}))
    assert text.splitlines()[0] == "per_device  2024-03-05  2 rows"
    assert "12:00:00 → 12:01:00" in text.splitlines()[3]
    assert "12:01:00 → 12:02:00" in text.splitlines()[4]


def test_open_corrected_and_retracted_results_say_so() -> None:
    batch = SinkBatch(
        0,
        1,
        results={
            "per_device": pl.concat(
                [
                    _results(["a"], [0], final=False),
                    _results(["b"], [0], revision=1),
                    _results(["c"], [0], op="delete"),
                ]
            )
        },
    )
    text = _printed(_sink(), batch)
    assert [line.split()[-1] for line in text.splitlines()[3:6]] == [
        "open",
        "corrected",
        "retracted",
    ]


def _retraction(device: str, minute: int) -> pl.DataFrame:
    """A delete as the session operator emits it: the window's key and start, nothing else."""
    return pl.DataFrame(
        {
            "device_id": [device],
            "window_start": [T0 + timedelta(minutes=minute)],
            "_op": ["delete"],
        },
        schema_overrides={"window_start": TS_TYPE},
    )


def test_a_retraction_names_its_window_by_its_start() -> None:
    merged = pl.concat([_retraction("a", 1), _results(["b"], [0])], how="diagonal_relaxed")
    text = _printed(_sink(), SinkBatch(0, 1, results={"per_device": merged}))
    lines = text.splitlines()
    assert "12:00:00 → 12:01:00" in lines[3]
    assert "12:01:00 → ?" in lines[4]
    assert lines[4].split()[-1] == "retracted"


def test_a_batch_of_retractions_only_prints() -> None:
    text = _printed(_sink(), SinkBatch(0, 1, results={"per_device": _retraction("a", 0)}))
    assert text.splitlines()[0] == "per_device  2024-03-05 12:00:00 → ?  1 row"
    assert text.splitlines()[3].split() == ["a", "retracted"]


def test_rows_beyond_max_rows_are_counted_not_printed() -> None:
    devices: list[str | None] = [f"d{i:02}" for i in range(5)]
    text = _printed(
        _sink(max_rows=2), SinkBatch(0, 1, results={"per_device": _results(devices, [0] * 5)})
    )
    assert "d01" in text
    assert "d02" not in text
    assert "… 3 more rows" in text


def test_dead_letters_print_as_warnings_even_with_results_only() -> None:
    dead = dead_letters(
        [b"{not json" + b"x" * 200],
        ["invalid_json"],
        ["invalid JSON: unexpected end"],
        ["line 7 of input"],
        T0,
    )
    text = _printed(_sink(), SinkBatch(0, 1, dead_letters=dead))
    assert text.startswith(
        "⚠ dead letter (line 7 of input) invalid JSON: unexpected end  {not json"
    )
    assert text.rstrip().endswith("…")


def test_batch_counts_print_unless_results_only() -> None:
    readings = pl.DataFrame({"device_id": ["a", "b"]})
    batch = SinkBatch(2, 40, readings=readings)
    assert _printed(_sink(), batch) == ""
    assert _printed(_sink(results_only=False), batch) == "partition 2 @ 40: 2 readings\n"


def test_settings_build_the_sink() -> None:
    sink = ConsoleSinkSettings.model_validate({"type": "console", "max_rows": 5}).build()
    assert (sink.results_only, sink.max_rows) == (True, 5)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ConsoleSinkSettings(max_rows=0)


HOSTILE_ID = "[bold red]X[/bold red][link=https://evil.example]click[/link]\x1b[2J\u202eevil"


def test_device_ids_print_literally_never_as_markup_or_terminal_controls() -> None:
    batch = SinkBatch(0, 1, results={"per_device": _results([HOSTILE_ID], [0])})
    text = _printed(_sink(width=300), batch)
    assert "[bold red]X[/bold red][link=https://evil.example]click[/link]" in text
    assert "\\x1b[2J\\u202eevil" in text
    assert "\x1b" not in text
    assert "\u202e" not in text


def test_dead_letters_show_reason_origin_and_raw_bytes_literally() -> None:
    dead = dead_letters(
        [b"\x1b]8;;https://e.example\x07\xff[red]raw"],
        ["invalid_json"],
        ["invalid JSON near [blink]x[/blink]"],
        ["line 1 of [i]r.ndjson"],
        T0,
    )
    text = _printed(_sink(width=200), SinkBatch(0, 1, dead_letters=dead))
    assert "(line 1 of [i]r.ndjson) invalid JSON near [blink]x[/blink]" in text
    assert "\\x1b]8;;https://e.example\\x07\\xff[red]raw" in text
    assert "\x1b" not in text
    assert "\x07" not in text


def test_a_styled_terminal_gets_no_escape_sequence_from_the_data() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system="standard")
    sink = ConsoleSink(console=console)
    text = _printed(sink, SinkBatch(0, 1, results={"per_device": _results([HOSTILE_ID], [0])}))
    assert "\x1b[2J" not in text
    assert "\x1b]8;" not in text  # no hyperlink
    assert "[link=https://evil.example]" in text
