"""``sensorstream demo``: the reference jobs as scenarios, or a generic simulated fleet.

``demo NAME`` runs one scenario of :mod:`sensorstream.scenarios` live (its feeds paced by
the clock, its dashboard served); ``demo NAME --to mqtt://...`` or ``--to kafka://...``
runs it through that broker (:mod:`sensorstream.scenarios.brokers`); ``demo all`` runs
every one at once, with an index of their dashboards (:mod:`sensorstream.cli.demo_all`);
``demo --list`` lists them; ``demo fleet`` (or ``demo`` alone) is the generic fleet
(per-device windows, two rules), sized by ``--devices`` and ``--window``. ``--history``
starts the scenarios' devices that long ago, so the dashboard opens with windows already
closed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from sensorstream.cli.failures import Option, friendly_errors
from sensorstream.cli.running import console, duration_option, execute_spec, finish
from sensorstream.display import safe_text
from sensorstream.errors import ConfigError

if TYPE_CHECKING:
    from datetime import timedelta

    from sensorstream.scenarios import Scenario

__all__ = ["ALL", "FLEET", "demo"]

FLEET = "fleet"
ALL = "all"


def demo(
    name: Annotated[
        str | None,
        typer.Argument(
            help="The scenario (see --list), all of them at once, or fleet: a generic "
            "simulated fleet.",
            show_default=False,
        ),
    ] = None,
    list_scenarios: Annotated[
        bool, typer.Option("--list", help="List the scenarios and exit.")
    ] = False,
    inject: Annotated[
        str | None,
        typer.Option(
            "--inject",
            "--disrupt",
            help="The condition the scenario's alerts watch for (see --list), e.g. "
            "--disrupt Wiedikon for access.",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Stop after this long (default: until Ctrl-C).")
    ] = None,
    history: Annotated[
        str | None,
        typer.Option(
            help="Start the scenario's devices this long ago: what they sent since comes "
            "at once, so the dashboard opens with history (e.g. 2m).",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Run it through a broker: mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC "
            "(one topic per stream under TOPIC).",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            help="Load the scenario's reference tables into this PostgreSQL database "
            "(postgresql://USER@HOST:PORT/DB) and read them from there, e.g. heartwatch's "
            "historical ranges (default: a file beside the store).",
            show_default=False,
        ),
    ] = None,
    serve: Annotated[bool, typer.Option(help="Serve the API while running.")] = True,
    port: Annotated[
        int,
        typer.Option(
            help="The API's port (all: the index's; the scenarios' follow it; 0: free ones).",
            min=0,
            max=65535,
        ),
    ] = 8000,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the dashboard in a browser.")
    ] = False,
    devices: Annotated[int, typer.Option(help="fleet: simulated devices.")] = 20,
    window: Annotated[str, typer.Option(help="fleet: tumbling window size.")] = "5s",
) -> None:
    """Run a reference job live (simulated devices -> pipeline -> store -> dashboard)."""
    options = {
        "devices": Option("--devices", devices),
        "window": Option("--window", window),
        "duration": Option("--duration", duration),
        "inject": Option("--inject", inject),
        "history": Option("--history", history),
    }
    with friendly_errors(options):
        if list_scenarios:
            _list()
            return
        if name is None or name == FLEET:
            _fleet(devices, window, duration, serve=serve, port=port, open_page=open_page)
            return
        bounded = duration_option("--duration", duration) if duration else None
        back = duration_option("--history", history) if history else None
        if name == ALL:
            if inject is not None:
                msg = "--inject disturbs one scenario: run demo NAME --inject VALUE"
                raise ConfigError(msg)
            if to is not None:
                msg = "--to runs one scenario through a broker: run demo NAME --to URL"
                raise ConfigError(msg)
            if table is not None:
                msg = "--table puts one scenario's tables in PostgreSQL: run demo NAME --table DSN"
                raise ConfigError(msg)
            from sensorstream.cli.demo_all import demo_all

            demo_all(port=port, duration=bounded, history=back, serve=serve, open_page=open_page)
            return
        from sensorstream.scenarios import scenario

        chosen = scenario(name)
        if to is not None:
            if back is not None:
                msg = "--history and --to do not go together: a broker run starts now"
                raise ConfigError(msg)
            _through(
                chosen, to, bounded, inject, table, serve=serve, port=port, open_page=open_page
            )
            return
        start = None if back is None else datetime.now(UTC) - back
        if back is not None and bounded is not None:
            bounded += back  # the feeds' duration counts from their start
        spec = chosen.spec(duration=bounded, inject=inject, start=start, tables_at=table)
        spec = spec.model_copy(update={"api": spec.api.overridden(serve=serve, port=port)})
        console.print(
            Text.assemble(
                ("sensorstream demo ", "bold"),
                safe_text(chosen.name, "bold"),
                f": {chosen.job} (as in {chosen.document}). Ctrl-C to stop.",
            )
        )
        finish(execute_spec(spec, fresh=True, progress=False, open_page=open_page))


def _through(
    chosen: Scenario,
    to: str,
    duration: timedelta | None,
    inject: str | None,
    table: str | None,
    *,
    serve: bool,
    port: int,
    open_page: bool,
) -> None:
    """A scenario through a broker: its feeds published there, its pipeline reading them."""
    from sensorstream.scenarios.brokers import Journey

    journey = Journey.of(chosen, to, duration=duration, inject=inject, tables_at=table)
    spec = journey.spec
    spec = spec.model_copy(update={"api": spec.api.overridden(serve=serve, port=port)})
    journey.spec = spec
    journey.open()  # a broker it cannot reach fails here, before the pipeline starts
    console.print(
        Text.assemble(
            ("sensorstream demo ", "bold"),
            safe_text(chosen.name, "bold"),
            f": {chosen.job} (as in {chosen.document}), through ",
            safe_text(journey.route.url),
            ". Ctrl-C to stop.",
        )
    )
    for stream, published, read in journey.streams():
        console.print(
            Text.assemble(
                "  publishing stream ",
                safe_text(stream, "bold"),
                " to ",
                safe_text(published),
                "; the pipeline reads ",
                safe_text(read),
            )
        )
    try:
        outcome = execute_spec(
            spec,
            fresh=True,
            progress=False,
            open_page=open_page,
            sources=journey.sources(),
            beside=journey.running(),
        )
    finally:
        journey.stop()  # also when the pipeline failed before publishing began
    finish(outcome)


def _list() -> None:
    """The scenarios: name, the document it reproduces, what it does, what --inject does."""
    from sensorstream.scenarios import SCENARIOS

    table = Table(box=None)
    table.add_column("scenario", no_wrap=True)
    table.add_column("reproduces", no_wrap=True)  # a file name: never cut
    table.add_column("the job")
    table.add_column("--inject")
    for item in SCENARIOS.values():
        table.add_row(
            item.name, item.document, item.job, item.injection.help if item.injection else ""
        )
    table.add_row(ALL, "", "every scenario above at once, with an index of their dashboards", "")
    table.add_row(FLEET, "", "a generic fleet: per-device windows and two rules", "")
    console.print(table)


def _fleet(
    devices: int, window: str, duration: str | None, *, serve: bool, port: int, open_page: bool
) -> None:
    """The generic simulated fleet, with its live dashboard."""
    from sensorstream.cli.specs import DEMO_DB, demo_spec

    spec = demo_spec(devices, window, duration)
    spec = spec.model_copy(update={"api": spec.api.overridden(serve=serve, port=port)})
    console.print(
        Text.assemble(
            ("sensorstream demo", "bold"),
            f": {devices} simulated devices, ",
            safe_text(window),
            " windows; results also stored in ",
            safe_text(DEMO_DB),
            ". Ctrl-C to stop.",
        )
    )
    finish(execute_spec(spec, fresh=True, progress=False, open_page=open_page))
