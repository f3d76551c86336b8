"""Reading alerts back: every transition of a pipeline's rules, and each alert's current state.

The DuckDB sink keeps one row per transition (``alert_transitions``); an alert's current
state is its latest transition. Corrections (a judged window corrected by late readings)
are transitions of kind ``correction``: they are part of an alert's history and leave its
state as it was.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

import polars as pl

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
        self, pipeline: str, *, state: str | None = None, rule: str | None = None
    ) -> pl.DataFrame:
        """Each alert's latest transition (corrections aside): its current state and severity."""
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
        query = f"SELECT * FROM ({latest})"
        if state is not None:
            query += " WHERE state = ?"
            parameters.append(state)
        return self._frame(query + " ORDER BY event_time, alert_id", parameters)

    @staticmethod
    def _empty() -> pl.DataFrame:
        schema = {"partition": pl.Int32(), "position": pl.Int64(), **TRANSITION_SCHEMA}
        return pl.DataFrame(schema={**schema, EMITTED_AT: pl.Datetime("us", "UTC")})
