"""The ``sensorstream`` command: run, replay, simulate, query, serve, the demo, and ``alerts``.

Each command imports what it needs when it runs, so ``sensorstream --help`` (and a typo)
answers without loading Polars, DuckDB, Pydantic or the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from sensorstream.cli.alerts import alerts
from sensorstream.cli.demo import demo
from sensorstream.cli.failures import EXIT_CODES_HELP, Option, errors, friendly_errors
from sensorstream.cli.paths import DEFAULT_DB
from sensorstream.cli.running import console, duration_option, execute_spec, finish
from sensorstream.display import safe_text
from sensorstream.errors import CheckpointError, ConfigError, StoreBusy

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Real-time analytics of IoT sensor data: event-time windows, stored and queryable.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(alerts, name="alerts")
app.command(epilog=EXIT_CODES_HELP)(demo)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"sensorstream {version('sensorstream')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Real-time analytics of IoT sensor data: event-time windows, stored and queryable."""


@app.command(epilog=EXIT_CODES_HELP)
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    fresh: Annotated[
        bool, typer.Option(help="Discard checkpoints; start from the beginning.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    serve: Annotated[
        bool | None,
        typer.Option(
            help="Serve the API (queries, live events, /metrics, ingest) while running "
            "[default: api.serve, true]",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Where the API listens [default: api.host, 127.0.0.1]", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="The API's port [default: api.port, 8000]", min=0, max=65535, show_default=False
        ),
    ] = None,
    until_end: Annotated[
        bool,
        typer.Option(
            "--until-end",
            help="Kafka streams end at the end offsets found at start (a replay of a topic).",
        ),
    ] = False,
) -> None:
    """Run a pipeline defined in YAML until its source ends (Ctrl-C stops it cleanly)."""
    from sensorstream.pipeline.spec import load_spec

    with friendly_errors():
        spec = load_spec(pipeline)
        if until_end:
            from sensorstream.cli.specs import until_end as ending

            spec = ending(spec)
        spec = spec.model_copy(
            update={"api": spec.api.overridden(serve=serve, host=host, port=port)}
        )
        finish(execute_spec(spec, fresh=fresh, progress=progress))


@app.command(epilog=EXIT_CODES_HELP)
def replay(
    file: Annotated[
        Path | None,
        typer.Argument(help="NDJSON, CSV or Parquet file of readings.", show_default=False),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Replay a real dataset shipped in a package instead of a file: "
            "seattle-temps or sf-temps (vega_datasets), through the weather pipeline.",
            show_default=False,
        ),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            help="Pipeline YAML, or a scenario's name (weather); its source is replaced "
            "by the file or the dataset."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Pipeline name: its checkpoint and stored results. "
            "Default: replay_ and the file's name (or the YAML's name; with --dataset, "
            "the pipeline's name, _ and the dataset's)."
        ),
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Replay at recorded speed x this; default: max speed.")
    ] = None,
    window: Annotated[str, typer.Option(help="Tumbling window size without --pipeline.")] = "1m",
    db: Annotated[Path, typer.Option(help="DuckDB file without --pipeline.")] = DEFAULT_DB,
    fresh: Annotated[bool, typer.Option(help="Discard checkpoints.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Replay a recorded file, or a real dataset, through a pipeline.

    A file without --pipeline runs per-device tumbling windows over its numeric fields (of
    the first NDJSON line, the CSV's first rows or the Parquet schema). --dataset writes
    the dataset's readings as the weather scenario's payloads into .sensorstream/datasets/
    and runs its scenario's pipeline over them (--pipeline another).
    """
    options = {
        "speed": Option("--speed", speed),
        "window": Option("--window", window),
        "name": Option("--name", name),
    }
    with friendly_errors(options):
        from sensorstream.cli.specs import dataset_replay_spec, replay_spec

        if dataset is not None and file is None:
            spec = dataset_replay_spec(dataset, pipeline=pipeline, pipeline_name=name, speed=speed)
        elif file is not None and dataset is None:
            spec = replay_spec(
                file, name=name, pipeline=pipeline, speed=speed, window=window, db=db
            )
        else:
            msg = "give a file to replay, or --dataset NAME (seattle-temps, sf-temps), not both"
            raise ConfigError(msg)
        spec = spec.model_copy(update={"api": spec.api.overridden(serve=False)})
        try:
            outcome = execute_spec(spec, fresh=fresh, progress=progress)
        except CheckpointError as error:
            msg = f"{error}; or replay it as a pipeline of its own with --name"
            raise CheckpointError(msg) from None
        finish(outcome)


@app.command(epilog=EXIT_CODES_HELP)
def simulate(
    out: Annotated[
        Path | None,
        typer.Argument(help="Output file: .ndjson, .csv or .parquet.", show_default=False),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Publish live instead: kafka://HOST:PORT/TOPIC or mqtt://HOST:PORT/TOPIC "
            "({device_id} in an MQTT topic becomes each device's id).",
            show_default=False,
        ),
    ] = None,
    devices: Annotated[int, typer.Option(help="Number of devices.")] = 1000,
    readings: Annotated[int, typer.Option(help="Number of readings.")] = 100_000,
    rate: Annotated[
        float, typer.Option(help="With --to: readings a second, the whole fleet.", min=0.001)
    ] = 1000.0,
    duration: Annotated[
        str | None,
        typer.Option(help="With --to: publish this long (e.g. 5m) instead of --readings."),
    ] = None,
    disorder: Annotated[str, typer.Option(help="Largest event-time disorder.")] = "5s",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Write a simulated dataset of readings, or publish a live fleet to Kafka or MQTT."""
    with friendly_errors():
        if to is not None:
            _publish(
                to, devices=devices, readings=readings, rate=rate, duration=duration, seed=seed
            )
            return
        if out is None:
            msg = "give an output file, or --to kafka://... or mqtt://... to publish live"
            raise ConfigError(msg)
        from sensorstream.sources.simulator import write_dataset

        written = write_dataset(
            out,
            devices=devices,
            readings=readings,
            max_disorder=duration_option("--disorder", disorder),
            seed=seed,
        )
        console.print(
            Text.assemble(
                f"wrote {written:,} readings from {devices:,} devices to ", safe_text(out)
            )
        )


def _publish(
    to: str, *, devices: int, readings: int, rate: float, duration: str | None, seed: int
) -> None:
    """``simulate --to``: publish the fleet, then say the rate achieved beside the target."""
    from sensorstream.sources.simulator_publish import publish_fleet, publisher_for

    seconds = duration_option("--duration", duration).total_seconds() if duration else None
    publisher = publisher_for(to)
    console.print(
        Text.assemble(
            f"publishing {devices:,} devices at {rate:,.0f} readings/s to ", safe_text(to)
        )
    )
    done = publish_fleet(
        publisher,
        devices=devices,
        rate=rate,
        readings=None if seconds is not None else readings,
        seconds=seconds,
        seed=seed,
    )
    console.print(
        f"published {done.readings:,} readings in {done.seconds:.1f} s: "
        f"{done.rate:,.0f} readings/s (target {done.target_rate:,.0f}/s, "
        f"{done.rate / done.target_rate:.0%})"
    )


@app.command(epilog=EXIT_CODES_HELP)
def query(
    sql: Annotated[
        str | None, typer.Argument(help="SQL to run (read-only).", show_default=False)
    ] = None,
    db: Annotated[Path, typer.Option(help="DuckDB file written by a pipeline.")] = DEFAULT_DB,
    pipeline: Annotated[str | None, typer.Option(help="Show this pipeline's results.")] = None,
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, csv, json or ndjson. Piped, a table is never cut to the terminal's "
            "width and shows floats in full.",
        ),
    ] = "table",
) -> None:
    """Query stored results: a SQL statement, or a pipeline's latest window results.

    Without either: the pipelines stored, with their steps. While a pipeline runs, the
    question goes to its API (with the token in SENSORSTREAM_TOKEN, if it needs one).
    """
    with friendly_errors():
        if limit < 0:
            msg = f"--limit {limit}: must be zero or more"
            raise ConfigError(msg)
        from sensorstream.cli.output import check_format, print_frame

        check_format(format)
        from sensorstream.store import Store

        try:
            with Store(db) as store:
                frame = store.command(sql, pipeline, step, limit)
        except StoreBusy:  # a running pipeline holds it: ask its API, if it serves one
            from sensorstream.cli.remote import served_query

            answer = served_query(db, sql=sql, pipeline=pipeline, step=step, limit=limit)
            if answer is None:
                raise
            frame = answer
        print_frame(frame.head(limit), format)


@app.command(epilog=EXIT_CODES_HELP)
def serve(
    db: Annotated[Path, typer.Option(help="DuckDB file written by a pipeline.")] = DEFAULT_DB,
    pipeline: Annotated[
        str | None, typer.Option(help="The pipeline to serve (needed if several are stored).")
    ] = None,
    host: Annotated[str, typer.Option(help="Where the API listens.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The API's port.", min=0, max=65535)] = 8000,
) -> None:
    """Serve a stopped pipeline's store over the HTTP API until Ctrl-C.

    Queries only (a running pipeline serves its store, live events and /metrics itself).
    Tokens come from SENSORSTREAM_TOKENS; without one, only this machine may call it.
    """
    with friendly_errors():
        from sensorstream.cli.serve import serve_store

        serve_store(db, pipeline, host, port, console=errors)
