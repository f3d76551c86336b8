r"""How ``query`` prints a frame: a table for people, or CSV, JSON or NDJSON for programs.

A table on a terminal fits its width and shows floats to three decimals; a table sent
down a pipe or into a file is never cut to 80 columns and shows every float in full
(the shortest text that reads back to the same number). Every cell is data, so it is
shown literally (:mod:`sensorstream.display`); binary cells (a dead letter's ``raw``) as
UTF-8 text with invalid bytes as ``\xNN``, in every format (Polars writes no binary JSON).
CSV has no nested values, so lists are written as their items joined by commas.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import TextIO

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sensorstream.display import safe_text, visible, visible_bytes
from sensorstream.errors import ConfigError


def _csv(frame: pl.DataFrame) -> str:
    return _flat(frame).write_csv()


def _json(frame: pl.DataFrame) -> str:
    return frame.write_json() + "\n"


def _ndjson(frame: pl.DataFrame) -> str:
    return frame.write_ndjson()


# The machine-readable formats, each by the Polars writer of that name.
WRITERS: dict[str, Callable[[pl.DataFrame], str]] = {
    "csv": _csv,
    "json": _json,
    "ndjson": _ndjson,
}
FORMATS = ("table", *WRITERS)


def check_format(name: str) -> str:
    """``name`` if it is a format ``query`` writes; else a ConfigError listing them."""
    if name not in FORMATS:
        msg = f"--format {visible(name)}: not a format; choose one of {', '.join(FORMATS)}"
        raise ConfigError(msg)
    return name


def print_frame(frame: pl.DataFrame, format_name: str, out: TextIO | None = None) -> None:
    """Write ``frame`` to ``out`` (stdout) as a table, CSV, JSON or NDJSON."""
    out = out if out is not None else sys.stdout
    terminal = out.isatty()
    if check_format(format_name) == "table":
        table = frame_table(frame, full_precision=not terminal)
        width = None if terminal else _natural_width(table)
        Console(file=out, width=width, highlight=False).print(table)
        return
    text = WRITERS[format_name](_binary_as_text(frame))
    if terminal:  # CSV writes control characters as they are; a terminal would act on them
        text = "\n".join(visible(line) for line in text.split("\n"))
    out.write(text)


def frame_table(frame: pl.DataFrame, *, full_precision: bool) -> Table:
    """A Rich table of the frame, every header and cell shown literally."""
    table = Table()
    for name in frame.columns:
        table.add_column(safe_text(name))
    for row in frame.iter_rows():
        table.add_row(*(cell(value, full_precision=full_precision) for value in row))
    return table


def cell(value: object, *, full_precision: bool = False) -> Text:
    """One value as table text: floats to 3 decimals unless ``full_precision``.

    >>> cell(0.1 + 0.2, full_precision=True).plain, cell(0.1 + 0.2).plain
    ('0.30000000000000004', '0.300')
    """
    if value is None:
        return Text("")
    if isinstance(value, float):
        if full_precision:
            return Text(repr(value))
        small = value != 0 and abs(value) < 0.001
        return Text(f"{value:.3g}" if small else f"{value:.3f}")
    if isinstance(value, list):
        return safe_text(", ".join(str(item) for item in value))
    return safe_text(value)


def _natural_width(table: Table) -> int:
    """How wide the table is with no cell wrapped: its width when nothing limits it."""
    measuring = Console(width=1_000_000, file=io.StringIO())
    return max(1, measuring.measure(table).maximum)


def _binary_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    binary = [name for name, dtype in frame.schema.items() if dtype == pl.Binary]
    if not binary:
        return frame
    return frame.with_columns(
        pl.Series(name, [None if v is None else visible_bytes(v) for v in frame[name]], pl.String)
        for name in binary
    )


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists as their items joined by commas, other nested values as JSON: CSV holds neither."""
    nested = {name: dtype for name, dtype in frame.schema.items() if dtype.is_nested()}
    if not nested:
        return frame
    flat = []
    for name, dtype in nested.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Array):
            column, dtype = column.arr.to_list(), pl.List(dtype.inner)
        if isinstance(dtype, pl.List):
            flat.append(column.list.eval(pl.element().cast(pl.String)).list.join(",").alias(name))
        else:
            flat.append(column.struct.json_encode().alias(name))
    return frame.with_columns(flat)
