"""``sensorstream demo all``: every scenario live at once, with an index of their dashboards.

Each scenario runs as ``demo NAME`` would (its own store and checkpoint under
``.sensorstream/``), its dashboard on a port of its own: the main port + 1, + 2, ... in the
order of ``demo --list`` (all free ones with ``--port 0``); the index listing them is on the
main port. Everything binds the loopback. The first Ctrl-C stops them all at a checkpoint,
a second quits at once. A scenario that fails is listed as failed, with its error, on the
index and in the closing table, and the others go on.
"""

from __future__ import annotations

import webbrowser
from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table
from rich.text import Text

from sensorstream.cli.execute import Interrupts, has_display
from sensorstream.cli.failures import ExitCode, errors
from sensorstream.cli.running import console
from sensorstream.display import safe_text
from sensorstream.errors import ConfigError
from sensorstream.runtime.ensemble import Ensemble, Listing, Member
from sensorstream.scenarios import SCENARIOS

__all__ = ["LOOPBACK", "demo_all"]

LOOPBACK = "127.0.0.1"


def demo_all(
    *,
    port: int,
    duration: timedelta | None,
    history: timedelta | None,
    serve: bool,
    open_page: bool,
) -> None:
    """Run every scenario until Ctrl-C (or ``duration``); exit with how they ended."""
    start = None if history is None else datetime.now(UTC) - history
    bounded = None if duration is None else duration + (history or timedelta(0))
    members = []
    for offset, item in enumerate(SCENARIOS.values(), start=1):
        listing = Listing(item.name, item.title, item.document, item.job)
        spec = item.spec(duration=bounded, start=start)
        own = 0 if port == 0 else port + offset
        api = spec.api.overridden(serve=serve, host=LOOPBACK, port=own)
        members.append(Member(listing, spec.model_copy(update={"api": api}), fresh=True))
    console.print(
        Text.assemble(
            ("sensorstream demo all", "bold"),
            f": {len(members)} scenario{'' if len(members) == 1 else 's'} live at once. "
            "Ctrl-C to stop them all.",
        )
    )
    try:
        ensemble = Ensemble(members, host=LOOPBACK, port=port)
    except OSError as error:
        why = error.strerror or str(error)
        msg = (
            f"cannot serve the scenarios' index on {LOOPBACK}:{port} ({why}): choose another --port"
        )
        raise ConfigError(msg) from error
    with Interrupts() as interrupts:
        interrupts.runner = ensemble
        try:
            ensemble.start(on_started=_announce)
            index = ensemble.url + "/"
            errors.print(Text.assemble(("Scenarios: ", "bold green"), safe_text(index)))
            if open_page and has_display():
                webbrowser.open(index)
            ensemble.wait()
        finally:
            ensemble.close()
    console.print(_closing(members))
    if interrupts.count:
        errors.print(Text("interrupted: stopped cleanly at a checkpoint", style="yellow"))
    raise typer.Exit(_exit_code(members, interrupted=interrupts.count > 0))


def _announce(member: Member) -> None:
    """A line per scenario as it starts: its dashboard, or why it failed."""
    name = safe_text(member.listing.name, "bold")
    if member.state == "failed":
        errors.print(
            Text.assemble(("failed: ", "bold red"), name, ": ", safe_text(str(member.error)))
        )
    elif member.server is not None:
        errors.print(Text.assemble("  ", name, ": ", safe_text(member.server.url + "/")))
    else:
        errors.print(Text.assemble("  ", name, ": running, not served (--no-serve)"))


def _closing(members: list[Member]) -> Table:
    """How each scenario ended: lines, results, alerts, and whether its lines add up."""
    table = Table("scenario", "ended", "lines", "results", "alert transitions", box=None)
    table.add_column("all lines accounted for")
    for member in members:
        counters = member.counters()
        ended = safe_text(member.state, "bold red" if member.state == "failed" else "")
        if member.error is not None:
            ended.append(": ")
            ended.append(safe_text(str(member.error)))
        balanced = member.summary.balanced if member.summary is not None else None
        table.add_row(
            safe_text(member.listing.name),
            ended,
            f"{counters.get('lines'):,}",
            f"{counters.get('results'):,}",
            f"{counters.get('alert_transitions'):,}",
            {True: "yes", False: "NO", None: ""}[balanced],
        )
    return table


def _exit_code(members: list[Member], *, interrupted: bool) -> ExitCode:
    """Bad input if one failed; else interrupted; else nothing accepted if one took nothing."""
    if any(member.state == "failed" for member in members):
        return ExitCode.BAD_INPUT
    if interrupted:
        return ExitCode.INTERRUPTED
    if any(member.counters().get("accepted") == 0 for member in members):
        return ExitCode.NOTHING_ACCEPTED
    return ExitCode.OK
