"""The options and arguments of ``sensorstream alerts``, and reading them.

Each parser turns a mistake into a :class:`~sensorstream.errors.ConfigError` naming the flag
and an example, which the commands print as one ``error:`` line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sensorstream.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from sensorstream.actions.alert_actions import AlertActions
    from sensorstream.actions.silences import KeyValue
    from sensorstream.store.query import Store

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


def now() -> datetime:
    """The current time, aware (UTC): silences and their ends are compared with it."""
    return datetime.now(UTC)


def parse_key(flag: str, text: str) -> dict[str, KeyValue]:
    """A ``--key`` value: a JSON object of key column values (as the HTTP API reads one)."""
    from sensorstream.actions.silences import parse_key as parse

    return parse(flag, text)


def parse_until(text: str) -> datetime:
    """An ``--until`` value: an ISO 8601 time with a time zone (a bare one would be ambiguous)."""
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


def parse_duration(flag: str, text: str) -> timedelta:
    """A positive duration such as ``30m`` or ``2h`` (``--for``)."""
    from sensorstream.durations import parse_positive_duration

    return parse_positive_duration(flag, text)


def no_store(db: Path) -> str:
    """The message for a ``--db`` that names no store and no actions file."""
    return (
        f"no store at {db}: run a pipeline with a duckdb sink first, or pass the file it "
        "wrote with --db"
    )


def pipeline_of(store: Store, pipeline: str | None) -> str:
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


def pipeline_of_alert(store: Store, alert_id: str, pipeline: str | None) -> str:
    """The pipeline that stored this alert (``--pipeline`` when several did)."""
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


def find_alert(
    db: Path, actions: AlertActions, alert_id: str, pipeline: str | None
) -> tuple[str | None, bool]:
    """The alert's pipeline, and whether the store could be asked (it is locked while in use)."""
    from sensorstream.store import Store

    if not db.exists():
        if not actions.path.exists():
            raise StoreError(no_store(db))
        return pipeline, False
    try:
        store = Store(db)
    except StoreError as error:
        if "lock" in str(error.__cause__).lower():
            return pipeline, False  # a running pipeline: the alert may be brand new
        raise
    with store:
        return pipeline_of_alert(store, alert_id, pipeline), True
