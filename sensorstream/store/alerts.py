"""Reading alerts back: every transition of a pipeline's rules, and each alert's current state.

The DuckDB sink keeps one row per transition (``alert_transitions``); an alert's current
state is its latest transition. Corrections (a judged window corrected by late readings)
are transitions of kind ``correction``: one joins the history of the key's alert open at
its window's time (else it has an id of its own) and leaves the alert's state as it was.
Acknowledgements and silences are kept apart, in a file that stays writable while a
pipeline runs (:mod:`~sensorstream.actions.alert_actions`);
:func:`with_actions` shows them beside the alerts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime

import polars as pl

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.actions.silences import KeyValue, key_matches
from sensorstream.engine.outputs import TRANSITION_SCHEMA
from sensorstream.sinks.duckdb_tables import ALERT_TRANSITIONS, EMITTED_AT

SqlParameters = Sequence[object]
_COLUMNS = ", ".join(["partition", "position", *TRANSITION_SCHEMA, EMITTED_AT])


class AlertQueries(ABC):
    """The alert half of :class:`~sensorstream.store.Store`."""

    @abstractmethod
    def _frame(self, query: str, parameters: SqlParameters | None = None) -> pl.DataFrame: ...

    @abstractmethod
    def _has_table(self, table: str) -> bool: ...

    @abstractmethod
    def _check_pipeline(self, name: str) -> None: ...

    def alert_transitions(
        self,
        pipeline: str,
        *,
        rule: str | None = None,
        alert_id: str | None = None,
        since: datetime | None = None,
        limit: int | None = 1000,
    ) -> pl.DataFrame:
        """Transitions by event time (oldest first): all, one rule's, or one alert's history."""
        self._check_pipeline(pipeline)
        if not self._has_table(ALERT_TRANSITIONS):
            return self._empty()
        conditions: list[str] = ["pipeline = ?"]
        parameters: list[object] = [pipeline]
        for column, value in (("rule", rule), ("alert_id", alert_id)):
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        if since is not None:
            conditions.append("event_time >= ?")
            parameters.append(since)
        where = " AND ".join(conditions)
        query = f"SELECT {_COLUMNS} FROM {ALERT_TRANSITIONS} WHERE {where}"
        order = "event_time, alert_id, sequence"
        if limit is not None:
            query = (
                f"SELECT * FROM ({query} ORDER BY event_time DESC, alert_id DESC, sequence DESC "
                f"LIMIT {int(limit)}) ORDER BY {order}"
            )
        else:
            query += f" ORDER BY {order}"
        return self._frame(query, parameters)

    def alerts(
        self,
        pipeline: str,
        *,
        state: str | None = None,
        rule: str | None = None,
        severity: str | None = None,
        key: Mapping[str, KeyValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pl.DataFrame:
        """Each alert's latest transition (corrections aside): its current state and severity.

        ``state`` and ``severity`` filter by the current ones; ``key`` keeps the alerts whose
        key has all of these values (``{"room": "r1"}`` matches any device in room r1);
        ``since`` (inclusive) and ``until`` (exclusive) by the event time of the latest
        transition, when the alert came to its current state.
        """
        self._check_pipeline(pipeline)
        if not self._has_table(ALERT_TRANSITIONS):
            return self._empty()
        conditions: list[str] = ["pipeline = ?", "kind = 'transition'"]
        parameters: list[object] = [pipeline]
        if rule is not None:
            conditions.append("rule = ?")
            parameters.append(rule)
        latest = (
            f"SELECT {_COLUMNS} FROM {ALERT_TRANSITIONS} WHERE {' AND '.join(conditions)} "
            "QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY sequence DESC) = 1"
        )
        current: list[str] = []
        for condition, value in (
            ("state = ?", state),
            ("severity = ?", severity),
            ("event_time >= ?", since),
            ("event_time < ?", until),
        ):
            if value is not None:
                current.append(condition)
                parameters.append(value)
        query = f"SELECT * FROM ({latest}) WHERE {' AND '.join(current) or 'true'}"
        frame = self._frame(query + " ORDER BY event_time, alert_id", parameters)
        if key:
            # Keys differ from rule to rule, so they are matched as JSON, alert by alert.
            keep = [key_matches(text, key) for text in frame["key"]]
            frame = frame.filter(pl.Series(keep, dtype=pl.Boolean()))
        return frame

    def pipelines_of_alert(self, alert_id: str) -> list[str]:
        """The pipelines that stored an alert of this id (one, unless rules and keys repeat)."""
        if not self._has_table(ALERT_TRANSITIONS):
            return []
        frame = self._frame(
            f"SELECT DISTINCT pipeline FROM {ALERT_TRANSITIONS} WHERE alert_id = ? "
            "ORDER BY pipeline",
            [alert_id],
        )
        return [str(name) for name in frame["pipeline"]]

    @staticmethod
    def _empty() -> pl.DataFrame:
        schema = {"partition": pl.Int32(), "position": pl.Int64(), **TRANSITION_SCHEMA}
        return pl.DataFrame(schema={**schema, EMITTED_AT: pl.Datetime("us", "UTC")})


def with_actions(
    alerts: pl.DataFrame, actions: AlertActions | None, *, pipeline: str, now: datetime
) -> pl.DataFrame:
    """The alerts with their latest acknowledgement and the silence muting them now, if any.

    Adds ``acknowledged_by``, ``acknowledged_at``, ``silenced_until`` and ``silence_id``
    (all null without ``actions``: a pipeline whose store has no actions file beside it);
    an acknowledgement never changes an alert's state.
    """
    acks = actions.acknowledgements() if actions is not None else []
    latest = {ack.alert_id: ack for ack in acks}  # oldest first: the latest stays
    listed = actions.silences() if actions is not None else []
    silences = [s for s in listed if s.active(now)]
    acked_by, acked_at, until, silence_ids = [], [], [], []
    for alert_id, rule, key in alerts.select("alert_id", "rule", "key").iter_rows():
        ack = latest.get(alert_id)
        acked_by.append(ack.by if ack is not None else None)
        acked_at.append(ack.at if ack is not None else None)
        silence = next((s for s in silences if s.matches(pipeline, rule, key)), None)
        until.append(silence.ends_at if silence is not None else None)
        silence_ids.append(silence.id if silence is not None else None)
    moment = pl.Datetime("us", "UTC")
    return alerts.with_columns(
        pl.Series("acknowledged_by", acked_by, pl.String()),
        pl.Series("acknowledged_at", acked_at, moment),
        pl.Series("silenced_until", until, moment),
        pl.Series("silence_id", silence_ids, pl.Int64()),
    )
