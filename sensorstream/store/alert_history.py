"""One alert's history and the silences as frames: what ``alerts show`` and the HTTP API give.

An alert's history gathers what is kept in three places: its transitions and corrections
(the DuckDB store), its acknowledgements and the silences matching it (the actions file
beside the store), and its webhook deliveries (each webhook sink's outbox, found through
the outboxes the sinks registered in the actions file).
"""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl

from sensorstream.actions.actions_file import from_us
from sensorstream.actions.alert_actions import AlertActions
from sensorstream.actions.silences import Silence
from sensorstream.sinks.webhook_outbox import read_deliveries

_MOMENT = pl.Datetime("us", "UTC")
HISTORY_SECTIONS = ("transitions and corrections", "acknowledgements", "silences", "deliveries")


def alert_history(
    transitions: pl.DataFrame,
    actions: AlertActions | None,
    *,
    pipeline: str,
    alert_id: str,
    now: datetime,
) -> dict[str, pl.DataFrame]:
    """The alert's history by section (:data:`HISTORY_SECTIONS`), each a frame.

    ``transitions`` are the alert's, as ``Store.alert_transitions`` gives them; without
    ``actions`` (no actions file known) the other sections are empty.
    """
    moment = _MOMENT
    history = transitions.select(
        "event_time", "sequence", "kind", "state", "previous_state", "severity", "value", "reason"
    )
    seen = actions.acknowledgements(alert_id) if actions is not None else []
    acks = pl.DataFrame(
        [(a.at, a.by, a.note) for a in seen],
        schema={"at": moment, "by": pl.String(), "note": pl.String()},
        orient="row",
    )
    rule = transitions["rule"][0] if transitions.height else ""
    key = transitions["key"][0] if transitions.height else ""
    every = actions.silences(include_ended=True) if actions is not None else []
    matching = [s for s in every if s.matches(pipeline, rule, key)]
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
        for outbox in (actions.outboxes(pipeline) if actions is not None else [])
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
    sections = (
        history,
        acks,
        silences_frame(matching, now),
        pl.DataFrame(deliveries, schema=delivery_schema, orient="row"),
    )
    return dict(zip(HISTORY_SECTIONS, sections, strict=True))


def silences_frame(listed: list[Silence], now: datetime) -> pl.DataFrame:
    """Silences as a frame: what each matches, until when, whether active at ``now``, who."""
    moment = _MOMENT
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
