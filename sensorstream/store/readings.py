"""Reading raw readings back: devices' latest values, series over time, dead letters, late.

A series is the raw readings of one device and measurement in a time range, or those
readings aggregated into buckets (``every=1m, agg=mean``). DuckDB does the work: one query
each, the bucket by ``time_bucket``; column names come only from the stored columns (the
caller's measurement is checked against them), values only as parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from sensorstream.errors import StoreError
from sensorstream.readings import DEAD_LETTER_SCHEMA, DEVICE, TS
from sensorstream.sinks.duckdb_tables import DEAD_LETTERS, LATE_FOR, LATE_READINGS, quote
from sensorstream.store.catalog import StoredPipeline

SqlParameters = Sequence[object]
# Aggregates a series may be bucketed by, as their SQL functions.
AGGREGATES = {"mean": "avg", "min": "min", "max": "max", "sum": "sum", "count": "count"}


class ReadingQueries(ABC):
    """The raw-readings half of :class:`~sensorstream.store.Store`."""

    @abstractmethod
    def _frame(self, query: str, parameters: SqlParameters | None = None) -> pl.DataFrame: ...

    @abstractmethod
    def reading_measurements(self, pipeline: str) -> list[str]:
        """The measurement columns stored for a pipeline."""

    @abstractmethod
    def pipeline(self, name: str) -> StoredPipeline:
        """What the sink recorded about one pipeline."""

    @abstractmethod
    def _has_table(self, table: str) -> bool: ...

    @abstractmethod
    def _latest(
        self, query: str, parameters: list[object], order: Sequence[str], limit: int | None
    ) -> pl.DataFrame: ...

    # -- dead letters and late readings ----------------------------------------------------
    def dead_letters(self, pipeline: str, limit: int | None = 100) -> pl.DataFrame:
        """The ``limit`` latest dead letters, by arrival: raw payload, reason and origin."""
        self.pipeline(pipeline)
        columns = ["partition", "position", *DEAD_LETTER_SCHEMA]
        if not self._has_table(DEAD_LETTERS):
            return pl.DataFrame(
                schema={"partition": pl.Int32(), "position": pl.Int64(), **DEAD_LETTER_SCHEMA}
            )
        query = (
            f"SELECT {', '.join(quote(c) for c in columns)} FROM {DEAD_LETTERS} WHERE pipeline = ?"
        )
        return self._latest(query, [pipeline], ["arrived_at", "partition", "position"], limit)

    def late_readings(
        self, pipeline: str, step: str | None = None, limit: int | None = 100
    ) -> pl.DataFrame:
        """The ``limit`` latest late readings (by position), with the steps they missed.

        ``step`` keeps those too late for that step; ``late_for`` lists every such step.
        """
        stored = self.pipeline(pipeline)
        if step is not None:
            stored.step(step)
        columns = ["partition", "position", LATE_FOR, *stored.reading_columns]
        if not self._has_table(LATE_READINGS):
            return pl.DataFrame(schema=dict.fromkeys(columns, pl.Null()))
        query = (
            f"SELECT {', '.join(quote(c) for c in columns)} FROM {LATE_READINGS} WHERE pipeline = ?"
        )
        parameters: list[object] = [pipeline]
        if step is not None:
            query += f" AND list_contains(string_split({LATE_FOR}, ','), ?)"
            parameters.append(step)
        order = ["position", "partition", TS, DEVICE]
        return self._latest(query, parameters, order, limit)

    def devices(self, pipeline: str, *, limit: int | None = 10_000) -> pl.DataFrame:
        """Each device's last reading time and the latest value of each measurement.

        A measurement a device's newest reading lacks shows the newest value it had.
        """
        measurements = self.reading_measurements(pipeline)
        latest = [
            f"arg_max({quote(m)}, {quote(TS)}) FILTER (WHERE {quote(m)} IS NOT NULL) AS {quote(m)}"
            for m in measurements
        ]
        columns = ", ".join([f"max({quote(TS)}) AS last_seen", "count(*) AS readings", *latest])
        query = (
            f"SELECT {quote(DEVICE)}, {columns} FROM readings WHERE pipeline = ? "
            f"GROUP BY {quote(DEVICE)} ORDER BY {quote(DEVICE)}"
        )
        parameters: list[object] = [pipeline]
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(limit)
        return self._frame(query, parameters)

    def series(
        self,
        pipeline: str,
        measurement: str,
        *,
        device: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        every: timedelta | None = None,
        agg: str = "mean",
        limit: int | None = 100_000,
    ) -> pl.DataFrame:
        """Readings of one measurement over time, raw or in buckets of ``every``.

        Raw: ``device_id, ts, <measurement>``, oldest first. Bucketed: ``device_id, ts``
        (the bucket's start), the aggregate and the readings it took. ``until`` is
        exclusive, ``since`` inclusive.
        """
        known = self.reading_measurements(pipeline)
        if measurement not in known:
            listed = ", ".join(known) or "none"
            msg = f"pipeline {pipeline!r} stores no measurement {measurement!r}; it has: {listed}"
            raise StoreError(msg)
        column = quote(measurement)
        where = ["pipeline = ?", f"{column} IS NOT NULL"]
        parameters: list[object] = [pipeline]
        for condition, value in (
            (f"{quote(DEVICE)} = ?", device),
            (f"{quote(TS)} >= ?", since),
            (f"{quote(TS)} < ?", until),
        ):
            if value is not None:
                where.append(condition)
                parameters.append(value)
        if every is None:
            select = f"{quote(DEVICE)}, {quote(TS)}, {column}"
            tail = f"ORDER BY {quote(TS)}, {quote(DEVICE)}"
        else:
            if agg not in AGGREGATES:
                msg = f"agg {agg!r} is not one of: {', '.join(AGGREGATES)}"
                raise StoreError(msg)
            if every <= timedelta(0):
                msg = f"every must be a positive duration, got {every}"
                raise StoreError(msg)
            bucket = f"time_bucket(?::INTERVAL, {quote(TS)})"
            parameters.insert(0, every)
            select = (
                f"{quote(DEVICE)}, {bucket} AS {quote(TS)}, "
                f"{AGGREGATES[agg]}({column}) AS {quote(f'{measurement}_{agg}')}, "
                "count(*) AS readings"
            )
            tail = f"GROUP BY ALL ORDER BY {quote(TS)}, {quote(DEVICE)}"
        query = f"SELECT {select} FROM readings WHERE {' AND '.join(where)} {tail}"
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(limit)
        return self._frame(query, parameters)
