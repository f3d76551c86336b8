"""``sensorstream alerts``: list, show, acknowledge and silence the alerts pipelines stored.

``list`` and ``show`` read the DuckDB store, which a running pipeline holds locked (DuckDB
lets no other process open it meanwhile): they work once the pipeline has stopped. ``ack``,
``silence``, ``unsilence`` and ``silences`` use the SQLite file beside the store
(:mod:`sensorstream.store.alert_actions`), which stays open to all: they work while the
pipeline runs, and its webhook and console sinks heed a new silence at once. The HTTP API
calls the same functions. Everything that came from data prints through
:mod:`sensorstream.display`; every mistake is one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from sensorstream.cli.failures import EXIT_CODES_HELP, friendly_errors
from sensorstream.cli.paths import DEFAULT_DB
from sensorstream.display import safe_text
from sensorstream.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import polars as pl

    from sensorstream.store.alert_actions import AlertActions
    from sensorstream.store.query import Store
    from sensorstream.store.silences import KeyValue, Silence

STATES = ("pending", "firing", "resolved", "flapping")
alerts = typer.Typer(
    help="List, show, acknowledge and silence alerts (ack and silence work while a pipeline runs).",
    no_args_is_help=True,
    epilog=EXIT_CODES_HELP,
)
console = Console(highlight=False, soft_wrap=True)

Db = Annotated[Path, typer.Option(help="The DuckDB store the pipeline writes.")]
PipelineOption = Annotated[
    str | None, typer.Option("--pipeline", help="The pipeline (default: the store's only one).")
]
By = Annotated[str, typer.Option("--by", help="Who does it.", show_default=False)]
Note = Annotated[str, typer.Option("--note", help="Why, or what was done.")]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", help='Key values as JSON, e.g. \'{"room": "r1"}\'.', show_default=False),
]


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
        wanted = _key("--key", key) if key is not None else None
        from sensorstream.cli.output import check_format, print_frame
        from sensorstream.store import AlertActions, Store
        from sensorstream.store.alerts import with_actions

        check_format(format)
        with Store(db) as store:
            name = _pipeline_of(store, pipeline)
            frame = store.alerts(name, state=state, rule=rule, severity=severity, key=wanted)
        frame = with_actions(frame, AlertActions.beside(db), pipeline=name, now=_now())
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

        with Store(db) as store:
            name = _pipeline_of_alert(store, alert_id, pipeline)
            history = store.alert_transitions(name, alert_id=alert_id, limit=None)
        actions = AlertActions.beside(db)
        sections = _history(history, actions, name, alert_id)
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
        found, checked = _find_alert(db, actions, alert_id, pipeline)
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
        wanted = _key("--key", key) if key is not None else None
        ends = _until(until) if until is not None else _now() + _duration("--for", for_ or "")
        from sensorstream.store import AlertActions

        actions = AlertActions.beside(db)
        if not db.exists() and not actions.path.exists():
            raise StoreError(_no_store(db))
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

        check_format(format)
        listed = AlertActions.beside(db).silences(include_ended=all_)
        if format == "table" and not listed:
            console.print("no silences" + ("" if all_ else " in effect"))
            return
        print_frame(_silences_frame(listed, _now()), format)


# -- helpers --------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _key(flag: str, text: str) -> dict[str, KeyValue]:
    """A ``--key`` value: a JSON object of key column values."""
    example = '\'{"room": "r1"}\''
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not value:
        msg = f"{flag} {text}: not a JSON object of key values; write e.g. {flag} {example}"
        raise ConfigError(msg)
    for name, item in value.items():
        if isinstance(item, dict | list):
            msg = f"{flag} {text}: {name!r} must be text, a number, true/false or null"
            raise ConfigError(msg)
    return value


def _until(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        msg = (
            f"--until {text}: not a time with a time zone; write e.g. 2025-01-31T18:00Z "
            "or 2025-01-31T19:00+01:00"
        )
        raise ConfigError(msg)
    return moment


def _duration(flag: str, text: str) -> timedelta:
    from sensorstream.pipeline.durations import parse_duration

    try:
        value = parse_duration(text)
    except ConfigError as error:
        msg = f"{flag} {text}: {error}"
        raise ConfigError(msg) from None
    if value.total_seconds() <= 0:
        msg = f"{flag} {text}: must be longer than zero"
        raise ConfigError(msg)
    return value


def _no_store(db: Path) -> str:
    return (
        f"no store at {db}: run a pipeline with a duckdb sink first, or pass the file it "
        "wrote with --db"
    )


def _pipeline_of(store: Store, pipeline: str | None) -> str:
    """The pipeline named, or the store's only one."""
    if pipeline is not None:
        store.pipeline(pipeline)  # fails listing the ones there are
        return pipeline
    names = sorted({str(name) for name in store.pipelines()["pipeline"]})
    if len(names) == 1:
        return names[0]
    if not names:
        msg = f"{store.path} holds no pipeline yet: run one with a duckdb sink first"
    else:
        msg = f"{store.path} holds several pipelines ({', '.join(names)}): pick one with --pipeline"
    raise StoreError(msg)


def _pipeline_of_alert(store: Store, alert_id: str, pipeline: str | None) -> str:
    names = store.pipelines_of_alert(alert_id)
    if pipeline is not None:
        store.pipeline(pipeline)
        names = [name for name in names if name == pipeline]
    if not names:
        within = f" of pipeline {pipeline}" if pipeline is not None else ""
        msg = f"no alert {alert_id}{within} in {store.path}; `sensorstream alerts list` shows them"
        raise StoreError(msg)
    if len(names) > 1:
        msg = f"alert {alert_id} is in pipelines {', '.join(names)}: pick one with --pipeline"
        raise StoreError(msg)
    return names[0]


def _find_alert(
    db: Path, actions: AlertActions, alert_id: str, pipeline: str | None
) -> tuple[str | None, bool]:
    """The alert's pipeline, and whether the store could be asked (it is locked while in use)."""
    from sensorstream.store import Store

    if not db.exists():
        if not actions.path.exists():
            raise StoreError(_no_store(db))
        return pipeline, False
    try:
        store = Store(db)
    except StoreError as error:
        if "lock" in str(error.__cause__).lower():
            return pipeline, False  # a running pipeline: the alert may be brand new
        raise
    with store:
        return _pipeline_of_alert(store, alert_id, pipeline), True


def _history(
    transitions: pl.DataFrame, actions: AlertActions, pipeline: str, alert_id: str
) -> dict[str, pl.DataFrame]:
    """The sections of ``alerts show``, each a frame."""
    import polars as pl

    from sensorstream.sinks.webhook_outbox import read_deliveries
    from sensorstream.store.actions_file import from_us

    moment = pl.Datetime("us", "UTC")
    history = transitions.select(
        "event_time", "sequence", "kind", "state", "previous_state", "severity", "value", "reason"
    )
    acks = pl.DataFrame(
        [(a.at, a.by, a.note) for a in actions.acknowledgements(alert_id)],
        schema={"at": moment, "by": pl.String(), "note": pl.String()},
        orient="row",
    )
    rule = transitions["rule"][0] if transitions.height else ""
    key = transitions["key"][0] if transitions.height else ""
    matching = [s for s in actions.silences(include_ended=True) if s.matches(pipeline, rule, key)]
    deliveries = [
        (
            outbox.endpoint,
            row.transition_id,
            row.state,
            row.status,
            row.attempts,
            from_us(row.delivered_us) if row.delivered_us is not None else None,
            row.last_error,
        )
        for outbox in actions.outboxes(pipeline)
        for row in read_deliveries(outbox.outbox, pipeline=pipeline, alert_id=alert_id)
    ]
    delivery_schema = {
        "endpoint": pl.String(),
        "transition_id": pl.String(),
        "state": pl.String(),
        "status": pl.String(),
        "attempts": pl.Int64(),
        "delivered_at": moment,
        "last_error": pl.String(),
    }
    return {
        "transitions and corrections": history,
        "acknowledgements": acks,
        "silences": _silences_frame(matching, _now()),
        "deliveries": pl.DataFrame(deliveries, schema=delivery_schema, orient="row"),
    }


def _silences_frame(listed: list[Silence], now: datetime) -> pl.DataFrame:
    import polars as pl

    moment = pl.Datetime("us", "UTC")
    rows = [
        (
            s.id,
            s.pipeline,
            s.rule,
            json.dumps(dict(s.key), sort_keys=True) if s.key is not None else None,
            s.ends_at,
            s.active(now),
            s.by,
            s.note,
            s.created_at,
            s.removed_by,
        )
        for s in listed
    ]
    schema = {
        "id": pl.Int64(),
        "pipeline": pl.String(),
        "rule": pl.String(),
        "key": pl.String(),
        "until": moment,
        "active": pl.Boolean(),
        "by": pl.String(),
        "note": pl.String(),
        "created_at": moment,
        "ended_by": pl.String(),
    }
    return pl.DataFrame(rows, schema=schema, orient="row")
