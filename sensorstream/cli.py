"""The ``sensorstream`` command: run, replay, simulate, query and the demo."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sensorstream.errors import SensorstreamError
from sensorstream.pipeline.durations import parse_duration
from sensorstream.pipeline.spec import PipelineSpec, load_spec
from sensorstream.runtime.counters import RunSummary
from sensorstream.runtime.runner import Runner
from sensorstream.sinks import ConsoleSinkSettings, DuckDBSinkSettings
from sensorstream.sources import FileSourceSettings, SimulatorSourceSettings
from sensorstream.sources.base import SourceBatch

app = typer.Typer(
    help="Real-time analytics of IoT sensor data: event-time windows, stored and queryable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@contextmanager
def _friendly_errors() -> Iterator[None]:
    try:
        yield
    except SensorstreamError as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None


def _execute(spec: PipelineSpec, *, fresh: bool, progress: bool) -> RunSummary:
    runner_box: list[Runner] = []

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        if runner_box:
            runner_box[0].stop()

    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        if not progress:
            runner = Runner(spec, fresh=fresh)
            runner_box.append(runner)
            return runner.run()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[readings]:>12,} readings"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task_id = bar.add_task(spec.name, total=None, readings=0)

            def _advance(item: SourceBatch, counters: dict[str, int]) -> None:
                bar.update(
                    task_id,
                    completed=item.position,
                    total=item.total,
                    readings=counters.get("lines"),
                )

            runner = Runner(spec, fresh=fresh, on_batch=_advance)
            runner_box.append(runner)
            return runner.run()
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_summary(summary: RunSummary) -> None:
    c = summary.counters
    table = Table(title="run summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("lines in", c.get("lines")),
        ("  accepted", c.get("accepted")),
        ("  duplicates", c.get("duplicates")),
        ("  late", c.get("late")),
        ("  dead-lettered", c.get("dead_letters")),
        ("  blank", c.get("blank")),
        ("results out", c.get("results")),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    table.add_row("readings/s (this run)", f"{summary.readings_per_second:,.0f}")
    table.add_row("wall time", f"{summary.seconds:.2f} s")
    if summary.resumed:
        table.add_row("resumed from checkpoint", "yes")
    table.add_row("all readings accounted for", "yes" if summary.balanced else "[red]NO[/]")
    console.print(table)


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    fresh: Annotated[
        bool, typer.Option(help="Discard checkpoints; start from the beginning.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a pipeline defined in YAML until its source ends (Ctrl-C stops it cleanly)."""
    with _friendly_errors():
        spec = load_spec(pipeline)
        _print_summary(_execute(spec, fresh=fresh, progress=progress))


def _infer_measurements(path: Path) -> dict[str, str]:
    """Numeric fields of the first NDJSON line, other than the device id and timestamp."""
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        record = orjson.loads(first)
    except orjson.JSONDecodeError:
        msg = f"{path}: the first line is not JSON; pass --pipeline to describe the readings"
        raise SensorstreamError(msg) from None
    found = {
        key: "float"
        for key, value in record.items()
        if key not in ("device_id", "ts")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }
    if not found:
        msg = f"{path}: no numeric measurements on the first line; pass --pipeline"
        raise SensorstreamError(msg)
    return found


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="NDJSON, CSV or Parquet file of readings.")],
    pipeline: Annotated[
        Path | None, typer.Option(help="Pipeline YAML; its source is replaced by the file.")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Replay at recorded speed x this; default: max speed.")
    ] = None,
    window: Annotated[str, typer.Option(help="Tumbling window size without --pipeline.")] = "1m",
    db: Annotated[Path, typer.Option(help="DuckDB file without --pipeline.")] = Path(
        "sensorstream.duckdb"
    ),
    fresh: Annotated[bool, typer.Option(help="Discard checkpoints.")] = False,
) -> None:
    """Replay a recorded file through a pipeline (by default: per-device tumbling windows)."""
    with _friendly_errors():
        source = FileSourceSettings(type="file", path=file, speed=speed)
        if pipeline is not None:
            spec = load_spec(pipeline).model_copy(update={"source": source})
        else:
            measurements = _infer_measurements(file)
            aggregates = ["count"] + [
                f"{fn}({m})" for m in measurements for fn in ("mean", "min", "max")
            ]
            spec = PipelineSpec.model_validate(
                {
                    "name": "replay",
                    "source": source,
                    "readings": {"measurements": measurements},
                    "steps": [
                        {
                            "name": "per_device",
                            "window": {"type": "tumbling", "size": parse_duration(window)},
                            "aggregates": aggregates,
                        }
                    ],
                    "sinks": [DuckDBSinkSettings(type="duckdb", path=db)],
                }
            )
        _print_summary(_execute(spec, fresh=fresh, progress=True))


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Output file: .ndjson, .csv or .parquet.")],
    devices: Annotated[int, typer.Option(help="Number of devices.")] = 1000,
    readings: Annotated[int, typer.Option(help="Number of readings.")] = 100_000,
    disorder: Annotated[str, typer.Option(help="Largest event-time disorder.")] = "5s",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Write a simulated dataset of readings, for replay and benchmarks."""
    from sensorstream.sources.simulator import write_dataset

    with _friendly_errors():
        write_dataset(
            out,
            devices=devices,
            readings=readings,
            max_disorder=parse_duration(disorder),
            seed=seed,
        )
        console.print(f"wrote {readings:,} readings from {devices:,} devices to {out}")


@app.command()
def query(
    sql: Annotated[str | None, typer.Argument(help="SQL to run (read-only).")] = None,
    db: Annotated[Path, typer.Option(help="DuckDB file written by a pipeline.")] = Path(
        "sensorstream.duckdb"
    ),
    pipeline: Annotated[str | None, typer.Option(help="Show this pipeline's results.")] = None,
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
) -> None:
    """Query stored results: a SQL statement, or a pipeline's latest window results."""
    from sensorstream.store import Store

    with _friendly_errors():
        store = Store(db)
        if sql is not None:
            frame = store.sql(sql)
        elif pipeline is not None:
            frame = store.results(pipeline, step=step, limit=limit)
        else:
            frame = store.pipelines()
        _print_frame(frame.head(limit))


def _print_frame(frame: pl.DataFrame) -> None:
    table = Table(show_lines=False)
    for name in frame.columns:
        table.add_column(name)
    for row in frame.iter_rows():
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


DEMO_DB = Path(".sensorstream/demo.duckdb")


def demo_spec(devices: int = 20, window: timedelta = timedelta(seconds=5)) -> PipelineSpec:
    """The demo: a live simulated fleet -> per-device windows -> console and DuckDB."""
    return PipelineSpec.model_validate(
        {
            "name": "demo",
            "source": SimulatorSourceSettings.model_validate(
                {
                    "type": "simulator",
                    "devices": devices,
                    "rate_hz": 2.0,
                    "live": True,
                    "out_of_order": 0.05,
                    "late_fraction": 0.01,
                    "duplicate_fraction": 0.01,
                    "malformed_fraction": 0.005,
                    "anomaly_fraction": 0.002,
                }
            ),
            "readings": {"measurements": {"temperature": "float", "humidity": "float"}},
            "event_time": {
                "out_of_orderness": "2s",
                "allowed_lateness": "5s",
                "idle_timeout": "10s",
            },
            "steps": [
                {
                    "name": "per_device",
                    "window": {"type": "tumbling", "size": window},
                    "aggregates": [
                        "count",
                        "mean(temperature)",
                        "max(temperature)",
                        "p90(temperature)",
                        "mean(humidity)",
                    ],
                }
            ],
            "sinks": [
                ConsoleSinkSettings(type="console"),
                DuckDBSinkSettings(type="duckdb", path=DEMO_DB),
            ],
            "checkpoint": {"dir": ".sensorstream/checkpoints/demo", "interval": "2s"},
        }
    )


@app.command()
def demo(
    devices: Annotated[int, typer.Option(help="Simulated devices.")] = 20,
    window: Annotated[str, typer.Option(help="Tumbling window size.")] = "5s",
    duration: Annotated[
        str | None, typer.Option(help="Stop after this long (default: until Ctrl-C).")
    ] = None,
) -> None:
    """A live simulated fleet through per-device windows, printed as results close."""
    with _friendly_errors():
        spec = demo_spec(devices, parse_duration(window))
        if duration is not None:
            source = spec.source.model_copy(update={"duration": parse_duration(duration)})
            spec = spec.model_copy(update={"source": source})
        console.print(
            f"[bold]sensorstream demo[/]: {devices} simulated devices, {window} windows; "
            f"results also stored in {DEMO_DB}. Ctrl-C to stop."
        )
        _print_summary(_execute(spec, fresh=True, progress=False))


def main() -> None:  # pragma: no cover - the console script calls app directly
    """Entry point for ``python -m sensorstream``."""
    app(sys.argv[1:])
