"""The console sink: window results as small Rich tables, dead letters as warning lines.

Made for watching a pipeline live (``sensorstream demo``): each step's results from one
batch print as one compact table. When every row shares a window, which is the usual case
as the watermark closes windows, the window goes in the title and not in every row.

Alert transitions print one line each; a transition whose notifications a silence mutes
(:mod:`sensorstream.actions.silences`, beside the pipeline's DuckDB store) prints dimmed
and marked ``(silenced)``: it is still an alert, and still stored.

Key values, reasons, origins and raw payloads are data: they print literally, with control
characters escaped (:mod:`sensorstream.display`), never as Rich markup.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from sensorstream.actions.actions_file import actions_path
from sensorstream.actions.silences import SilenceWatcher
from sensorstream.display import safe_text, visible_bytes
from sensorstream.engine.outputs import END, OP, START
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch

_RAW_WIDTH = 80  # characters of a dead letter's raw payload worth showing


class ConsoleSink(Sink):
    """Prints results as they are emitted; with ``results_only=False`` also each batch's counts.

    Dead letters always print (up to ``max_rows`` per batch): they mean something is wrong.
    ``console`` is where to print; tests pass one that records.
    """

    def __init__(
        self, results_only: bool = True, max_rows: int = 20, *, console: Console | None = None
    ) -> None:
        self.results_only = results_only
        self.max_rows = max_rows
        self.console = console if console is not None else Console(highlight=False)
        self._keys: dict[str, tuple[str, ...]] = {}
        self._pipeline = ""
        self._silences: SilenceWatcher | None = None

    def open(self, pipeline: PipelineInfo) -> None:
        """Remember each step's key columns, and find the silences of the pipeline's alerts."""
        self._keys = {step.name: step.key for step in pipeline.steps}
        self._pipeline = pipeline.name
        if pipeline.stores:
            self._silences = SilenceWatcher(actions_path(pipeline.stores[0]))

    def close(self) -> None:
        """Let go of the silences' file."""
        if self._silences is not None:
            self._silences.close()
            self._silences = None

    def write(self, batch: SinkBatch) -> None:
        """Print the batch's results, its dead letters and, unless results only, its counts."""
        if not self.results_only:
            self.console.print(_counts_line(batch), highlight=False)
        for step, results in batch.results.items():
            if results.height:
                self.console.print(self._table(step, results))
        for transitions in batch.alerts.values():
            for line in alert_lines(transitions, self.max_rows, silenced=self._silenced):
                self.console.print(line, no_wrap=True, overflow="ellipsis")
        if batch.dead_letters is not None and batch.dead_letters.height:
            self._print_dead_letters(batch.dead_letters)

    def _silenced(self, rule: str, key: str) -> bool:
        if self._silences is None:
            return False
        now = datetime.now(UTC)
        return self._silences.muting(self._pipeline, rule, key, since=now, now=now) is not None

    def _table(self, step: str, results: pl.DataFrame) -> Group:
        key = [c for c in self._keys.get(step, ()) if c in results.columns]
        if END not in results.columns:  # retractions only: a delete carries no window end
            results = results.with_columns(pl.lit(None, results.schema[START]).alias(END))
        results = results.sort([START, *key], nulls_last=True)
        one_window = results.select(pl.struct(START, END).n_unique()).item() == 1
        bookkeeping = {START, END, "revision", "final", OP}
        outputs = [c for c in results.columns if c not in bookkeeping and c not in key]
        title = safe_text(step, "bold")
        first_start: datetime = results[START][0]
        if one_window:
            window = _window(first_start, results[END][0])
            title.append(f"  {first_start:%Y-%m-%d} {window}", style="cyan")
        else:
            title.append(f"  {first_start:%Y-%m-%d}", style="cyan")
        title.append(f"  {results.height:,} {'row' if results.height == 1 else 'rows'}", "dim")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
        for column in key:
            table.add_column(safe_text(column), style="bold")
        if not one_window:
            table.add_column("window", style="cyan")
        for column in outputs:
            table.add_column(safe_text(column), justify="right")
        statuses = _statuses(results)
        show_status = any(status != "final" for status in statuses)
        if show_status:
            table.add_column("status", style="dim")
        shown = results.head(self.max_rows)
        for row, status in zip(shown.iter_rows(named=True), statuses, strict=False):
            cells = [_cell(row[c]) for c in key]
            if not one_window:
                cells.append(Text(_window(row[START], row[END])))
            cells += [_cell(row[c]) for c in outputs]
            if show_status:
                cells.append(Text(status))
            table.add_row(*cells, style="dim" if status == "retracted" else None)
        parts: list[RenderableType] = [title, table]
        if results.height > self.max_rows:
            parts.append(Text(f"… {results.height - self.max_rows:,} more rows", style="dim"))
        return Group(*parts)

    def _print_dead_letters(self, dead_letters: pl.DataFrame) -> None:
        for raw, reason, origin in (
            dead_letters.head(self.max_rows).select("raw", "reason", "origin").iter_rows()
        ):
            line = Text("⚠ dead letter ", style="yellow")
            line.append_text(safe_text(f"({origin}) ", "dim"))
            line.append_text(safe_text(reason))
            text = visible_bytes(bytes(raw))
            shown = text if len(text) <= _RAW_WIDTH else text[: _RAW_WIDTH - 1] + "…"
            line.append(f"  {shown}", style="dim")
            self.console.print(line, no_wrap=True, overflow="ellipsis")
        if dead_letters.height > self.max_rows:
            more = dead_letters.height - self.max_rows
            self.console.print(Text(f"⚠ … {more:,} more dead letters", style="yellow"))


_ALERT_STYLES = {
    "firing": "bold red",
    "pending": "yellow",
    "resolved": "green",
    "flapping": "magenta",
    "correction": "cyan",
}


def alert_lines(
    transitions: pl.DataFrame,
    max_rows: int,
    *,
    silenced: Callable[[str, str], bool] | None = None,
) -> list[Text]:
    """One line per transition: ``🔔 hot firing critical {"room": "r1"} 12:00:00 why``.

    ``silenced(rule, key)`` tells a transition a silence mutes: its line is dimmed.
    """
    lines: list[Text] = []
    ordered = transitions.sort("event_time", "sequence")
    for row in ordered.head(max_rows).iter_rows(named=True):
        state = str(row["state"])
        muted = silenced is not None and silenced(str(row["rule"]), str(row["key"]))
        loud = state in ("firing", "flapping")
        line = Text(("🔕 " if muted else "🔔 ") if loud else "   ")
        line.append_text(safe_text(row["rule"], "bold"))
        line.append(f" {state}", style=_ALERT_STYLES.get(state, ""))
        if row["severity"]:
            line.append_text(safe_text(f" {row['severity']}"))
        line.append_text(safe_text(f" {row['key']}"))
        line.append(f" {_time(row['event_time'])}", style="cyan")
        line.append_text(safe_text(f"  {row['reason']}", "dim"))
        if muted:
            line.append(" (silenced)", style="dim")
            line.stylize("dim")
        lines.append(line)
    if transitions.height > max_rows:
        lines.append(Text(f"   … {transitions.height - max_rows:,} more transitions", style="dim"))
    return lines


def _statuses(results: pl.DataFrame) -> list[str]:
    """``final``, ``open`` (may still change), ``corrected`` (by late readings) or ``retracted``."""

    def column(name: str, default: object) -> pl.Expr:
        return pl.col(name) if name in results.columns else pl.lit(default)

    status = (
        pl.when(column(OP, "upsert") == "delete")
        .then(pl.lit("retracted"))
        .when(~column("final", True))
        .then(pl.lit("open"))
        .when(column("revision", 0) > 0)
        .then(pl.lit("corrected"))
        .otherwise(pl.lit("final"))
    )
    return [str(s) for s in results.select(status).to_series()]


def _counts_line(batch: SinkBatch) -> Text:
    readings = batch.readings.height if batch.readings is not None else 0
    late = batch.late.height if batch.late is not None else 0
    dead = batch.dead_letters.height if batch.dead_letters is not None else 0
    line = Text(f"partition {batch.partition} @ {batch.position}: ", style="dim")
    line.append(f"{readings:,} readings")
    if late:
        line.append(f", {late:,} late", style="magenta")
    if dead:
        line.append(f", {dead:,} dead letters", style="yellow")
    return line


def _window(start: datetime, end: datetime | None) -> str:
    """``12:00:00 → 12:01:00``; the dates are in the table's title.

    A retraction names its window by the start alone (a merged session's end is gone):
    ``12:00:00 → ?``.
    """
    return f"{_time(start)} → {'?' if end is None else _time(end)}"


def _time(moment: datetime) -> str:
    text = f"{moment:%H:%M:%S}"
    return text if moment.microsecond == 0 else f"{text}.{moment.microsecond // 1000:03d}"


def _cell(value: object) -> Text:
    """A value as a cell: numbers short, anything else (keys are data) shown literally."""
    if value is None:
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, int):
        return Text(f"{value:,}")
    if isinstance(value, float):
        if abs(value) >= 1000:
            return Text(f"{value:,.0f}")
        return Text(f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}")
    if isinstance(value, datetime):
        return Text(_time(value))
    return safe_text(value)


class ConsoleSinkSettings(BaseModel):
    """``sink: {type: console}`` in a pipeline's YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["console"] = "console"
    results_only: bool = True
    max_rows: int = Field(default=20, ge=1)

    def build(self) -> ConsoleSink:
        """The sink these settings describe."""
        return ConsoleSink(self.results_only, self.max_rows)
