"""Reading raw readings back: each device's latest values, and series over time.

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
from sensorstream.readings import DEVICE, TS
from sensorstream.sinks.duckdb_tables import quote

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
