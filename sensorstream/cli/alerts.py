"""``sensorstream alerts``: list, show, acknowledge and silence the alerts pipelines stored.

``list`` and ``show`` read the DuckDB store, which a running pipeline holds locked (DuckDB
lets no other process open it meanwhile): they work once the pipeline has stopped. ``ack``,
``silence``, ``unsilence`` and ``silences`` use the SQLite file beside the store
(:mod:`sensorstream.actions.alert_actions`), which stays open to all: they work while the
pipeline runs, and its webhook and console sinks heed a new silence at once. The HTTP API
calls the same functions (:mod:`sensorstream.store.alert_history` builds ``show``'s
sections). Everything that came from data prints through
:mod:`sensorstream.display`; every mistake is one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from sensorstream.cli.alert_options import (
    By,
    Db,
    KeyOption,
    Note,
    PipelineOption,
    find_alert,
    no_store,
    now,
    parse_duration,
    parse_key,
    parse_until,
    pipeline_of,
    pipeline_of_alert,
)
from sensorstream.cli.failures import EXIT_CODES_HELP, friendly_errors
from sensorstream.cli.paths import DEFAULT_DB
from sensorstream.display import safe_text
from sensorstream.errors import ConfigError, StoreError

STATES = ("pending", "firing", "resolved", "flapping")
alerts = typer.Typer(
    help="List, show, acknowledge and silence alerts (ack and silence work while a pipeline runs).",
    no_args_is_help=True,
    epilog=EXIT_CODES_HELP,
)
console = Console(highlight=False, soft_wrap=True)


@alerts.command("list", epilog=EXIT_CODES_HELP)
def list_alerts(
    state: Annotated[
        str | None, typer.Option(help=f"Only this state: {', '.join(STATES)}.")
    ] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule's alerts.")] = None,
    severity: Annotated[str | None, typer.Option(help="Only this severity.")] = None,
    key: KeyOption = None,
    db: Db = DEFAULT_DB,
    pipeline: PipelineOption = None,
    format: Annotated[str, typer.Option("--format", help="table, csv, json or ndjson.")] = "table",
) -> None:
    """Each alert with its current state, its latest acknowledgement and any silence."""
    with friendly_errors():
        if state is not None and state not in STATES:
            msg = f"--state {state}: not a state; choose one of {', '.join(STATES)}"
            raise ConfigError(msg)
        wanted = parse_key("--key", key) if key is not None else None
        from sensorstream.cli.output import check_format, print_frame
        from sensorstream.store import AlertActions, Store
        from sensorstream.store.alerts import with_actions

        check_format(format)
        with Store(db) as store:
            name = pipeline_of(store, pipeline)
            frame = store.alerts(name, state=state, rule=rule, severity=severity, key=wanted)
        frame = with_actions(frame, AlertActions.beside(db), pipeline=name, now=now())
        shown = frame.select(
            "alert_id",
            "rule",
            "key",
            "state",
            "severity",
            "started_at",
            frame["event_time"].alias("changed_at"),
            "value",
            "acknowledged_by",
            "acknowledged_at",
            "silenced_until",
        )
        if format == "table" and shown.height == 0:
            console.print(Text.assemble("no alerts of pipeline ", safe_text(name), " match"))
            return
        print_frame(shown, format)


@alerts.command("show", epilog=EXIT_CODES_HELP)
def show(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (see `alerts list`).")],
    db: Db = DEFAULT_DB,
    pipeline: PipelineOption = None,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """One alert's history: transitions, corrections, acknowledgements, silences, deliveries."""
    with friendly_errors():
        if format not in ("table", "json"):
            msg = f"--format {format}: choose table or json"
            raise ConfigError(msg)
        from sensorstream.store import AlertActions, Store
        from sensorstream.store.alert_history import alert_history

        with Store(db) as store:
            name = pipeline_of_alert(store, alert_id, pipeline)
            history = store.alert_transitions(name, alert_id=alert_id, limit=None)
        actions = AlertActions.beside(db)
        sections = alert_history(history, actions, pipeline=name, alert_id=alert_id, now=now())
        if format == "json":
            document = {title: frame.to_dicts() for title, frame in sections.items()}
            typer.echo(json.dumps({"pipeline": name, **document}, default=str, indent=2))
            return
        from sensorstream.cli.output import frame_table

        last = history.filter(history["kind"] == "transition").tail(1).to_dicts()
        header = Text.assemble(("alert ", "bold"), safe_text(alert_id, "bold"))
        if last:
            row = last[0]
            header.append_text(
                safe_text(f": rule {row['rule']}, key {row['key']}, now {row['state']}")
            )
            if row["severity"]:
                header.append_text(safe_text(f" ({row['severity']})"))
            header.append_text(safe_text(f", since {row['started_at']}"))
        console.print(header)
        for title, frame in sections.items():
            if frame.height == 0:
                console.print(Text(f"{title}: none", style="dim"))
                continue
            console.print(Text(title, style="bold"))
            console.print(frame_table(frame, full_precision=False))


@alerts.command("ack", epilog=EXIT_CODES_HELP)
def ack(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (see `alerts list`).")],
    by: By,
    note: Note = "",
    db: Db = DEFAULT_DB,
    pipeline: PipelineOption = None,
) -> None:
    """Acknowledge an alert: who saw it (it stays in its state). Works while a pipeline runs."""
    with friendly_errors():
        from sensorstream.store import AlertActions

        actions = AlertActions.beside(db)
        found, checked = find_alert(db, actions, alert_id, pipeline)
        done = actions.acknowledge(alert_id, by=by, note=note, pipeline=found)
        line = Text.assemble(
            "acknowledged alert ", safe_text(alert_id, "bold"), " as ", safe_text(done.by)
        )
        if not checked:
            line.append(
                " (not checked against the store: a running pipeline holds it)", style="dim"
            )
        console.print(line)


@alerts.command("silence", epilog=EXIT_CODES_HELP)
def silence(
    by: By,
    rule: Annotated[str | None, typer.Option(help="Mute this rule's alerts.")] = None,
    key: KeyOption = None,
    for_: Annotated[
        str | None, typer.Option("--for", help="For how long, e.g. 30m, 2h.", show_default=False)
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Until when, e.g. 2025-01-31T18:00Z (with a time zone).", show_default=False
        ),
    ] = None,
    note: Note = "",
    db: Db = DEFAULT_DB,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only this pipeline's alerts (default: any).")
    ] = None,
) -> None:
    """Mute notifications (webhooks, console) of a rule's or a key's alerts for a while.

    The alerts themselves are still judged and stored. Works while a pipeline runs.
    """
    with friendly_errors():
        if (for_ is None) == (until is None):
            msg = "give either --for (e.g. --for 2h) or --until (e.g. --until 2025-01-31T18:00Z)"
            raise ConfigError(msg)
        if rule is None and key is None:
            msg = "name what to mute: --rule, --key or both"
            raise ConfigError(msg)
        wanted = parse_key("--key", key) if key is not None else None
        ends = (
            parse_until(until) if until is not None else now() + parse_duration("--for", for_ or "")
        )
        from sensorstream.store import AlertActions

        actions = AlertActions.beside(db)
        if not db.exists() and not actions.path.exists():
            raise StoreError(no_store(db))
        made = actions.silence(
            until=ends, by=by, rule=rule, key=wanted, pipeline=pipeline, note=note
        )
        console.print(
            Text.assemble(
                (f"silence {made.id}", "bold"),
                ": ",
                safe_text(made.scope()),
                f" muted until {made.until:%Y-%m-%d %H:%M:%S} UTC",
            )
        )


@alerts.command("unsilence", epilog=EXIT_CODES_HELP)
def unsilence(
    silence_id: Annotated[int, typer.Argument(help="The silence's id (see `alerts silences`).")],
    by: Annotated[str | None, typer.Option("--by", help="Who ends it.")] = None,
    db: Db = DEFAULT_DB,
) -> None:
    """End a silence now; notifications of its alerts go out again. Works while a pipeline runs."""
    with friendly_errors():
        from sensorstream.store import AlertActions

        ended = AlertActions.beside(db).unsilence(silence_id, by=by)
        console.print(
            Text.assemble(f"silence {ended.id} ended: ", safe_text(ended.scope()), " not muted")
        )


@alerts.command("silences", epilog=EXIT_CODES_HELP)
def silences(
    all_: Annotated[bool, typer.Option("--all", help="Ended silences too.")] = False,
    db: Db = DEFAULT_DB,
    format: Annotated[str, typer.Option("--format", help="table, csv, json or ndjson.")] = "table",
) -> None:
    """The silences in effect (or all of them, with who set and ended each)."""
    with friendly_errors():
        from sensorstream.cli.output import check_format, print_frame
        from sensorstream.store import AlertActions
        from sensorstream.store.alert_history import silences_frame

        check_format(format)
        listed = AlertActions.beside(db).silences(include_ended=all_)
        if format == "table" and not listed:
            console.print("no silences" + ("" if all_ else " in effect"))
            return
        print_frame(silences_frame(listed, now()), format)
