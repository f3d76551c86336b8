"""``sensorstream demo``: the reference jobs as scenarios, or a generic simulated fleet.

``demo NAME`` runs one scenario of :mod:`sensorstream.scenarios` live (its feeds paced by
the clock, its dashboard served); ``demo --list`` lists them; ``demo fleet`` is the
generic fleet (per-device windows, two rules), sized by ``--devices`` and ``--window``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from sensorstream.cli.failures import Option, friendly_errors
from sensorstream.cli.running import console, duration_option, execute_spec, finish
from sensorstream.display import safe_text

__all__ = ["FLEET", "demo"]

FLEET = "fleet"


def demo(
    name: Annotated[
        str | None,
        typer.Argument(
            help="The scenario (see --list), or fleet: a generic simulated fleet.",
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
    serve: Annotated[bool, typer.Option(help="Serve the API while running.")] = True,
    port: Annotated[int, typer.Option(help="The API's port.", min=0, max=65535)] = 8000,
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
    }
    with friendly_errors(options):
        if list_scenarios:
            _list()
            return
        if name is None or name == FLEET:
            _fleet(devices, window, duration, serve=serve, port=port, open_page=open_page)
            return
        from sensorstream.scenarios import scenario

        chosen = scenario(name)
        bounded = duration_option("--duration", duration) if duration else None
        spec = chosen.spec(duration=bounded, inject=inject)
        spec = spec.model_copy(update={"api": spec.api.overridden(serve=serve, port=port)})
        console.print(
            Text.assemble(
                ("sensorstream demo ", "bold"),
                safe_text(chosen.name, "bold"),
                f": {chosen.job} (as in {chosen.document}). Ctrl-C to stop.",
            )
        )
        finish(execute_spec(spec, fresh=True, progress=False, open_page=open_page))


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
