"""Reading back what :class:`~sensorstream.sinks.duckdb.DuckDBSink` wrote, read-only.

The tables are found through the sink's ``pipelines`` and ``pipeline_steps`` tables, so a
caller names pipelines and steps, never tables. Raw readings live in Parquet segments
beside the file; the view ``readings`` shows them (:mod:`~sensorstream.store.segments`).
Every query returns a Polars frame with timestamps in UTC. "The ``limit`` latest rows"
means: the most recent ones, oldest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import polars as pl

from sensorstream.engine.outputs import END, START
from sensorstream.errors import StoreBusy, StoreError
from sensorstream.readings import DEVICE, TS, TS_TYPE
from sensorstream.sinks.duckdb_tables import (
    COUNTERS,
    DEAD_LETTERS,
    LATE_READINGS,
    PIPELINE_STEPS,
    PIPELINES,
    READINGS,
    UPDATED_AT,
    quote,
)
from sensorstream.sinks.segments import segment_files
from sensorstream.store.alerts import AlertQueries
from sensorstream.store.catalog import StoreCounts, StoredPipeline, StoredStep
from sensorstream.store.readings import ReadingQueries
from sensorstream.store.reads_only import check_reads_only
from sensorstream.store.segments import allow_segments, register_readings

KeyValue = str | int | float | bool | None
SqlParameters = Sequence[object] | Mapping[str, object] | None


class Store(AlertQueries, ReadingQueries):
    """A read-only view of a DuckDB file written by the DuckDB sink.

    DuckDB lets no other process open a file while a pipeline writes it, so this fails
    with a :class:`~sensorstream.errors.StoreError` saying so; query a stopped pipeline,
    or, inside the process that runs it, pass ``connection`` (the sink's
    :meth:`~sensorstream.sinks.duckdb.DuckDBSink.reader`); or read its raw readings with
    :func:`~sensorstream.store.segments.scan_readings`. The view ``readings`` lists the
    segments when the store opens: :meth:`refresh` (or open it again) to see newer ones.
    """

    def __init__(
        self, path: Path | str, connection: duckdb.DuckDBPyConnection | None = None
    ) -> None:
        self.path = Path(path)
        if connection is not None:  # a running pipeline's own reader (DuckDBSink.reader)
            self._connection = connection
            self._connection.execute("SET TimeZone = 'UTC'").fetchall()
            self._connection.execute("SET parquet_metadata_cache = true").fetchall()
        else:
            self._connection = self._open(self.path)
        self._segments: tuple[Path, ...] = ()
        self._reading_schema: pl.Schema | None = None
        self._measurements: dict[str, list[str]] = {}
        try:
            self._register(None)
        except BaseException:
            self._connection.close()
            raise

    def refresh(self) -> None:
        """Show the segments a running pipeline wrote (or merged) since the view was made.

        Lists the segment folders; the view is made again only if the listing changed.
        """
        files = tuple(segment_files(self.path))
        if files != self._segments:
            self._register(files)

    def _register(self, files: tuple[Path, ...] | None) -> None:
        self._segments = register_readings(
            self._connection,
            self.path,
            legacy_table=self._has_table(READINGS),
            reading_columns=self._stored_reading_columns(),
            files=files,
        )
        self._reading_schema = None
        self._measurements = {}

    @staticmethod
    def _open(path: Path) -> duckdb.DuckDBPyConnection:
        if not path.exists():
            msg = (
                f"no store at {path}: run a pipeline with a duckdb sink "
                "(sinks: [{type: duckdb, path: ...}]) first, or pass the file it wrote"
            )
            raise StoreError(msg)
        try:
            connection = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as error:
            if "lock" in str(error).lower():
                raise StoreBusy(_cannot_open(path, error)) from error
            raise StoreError(_cannot_open(path, error)) from error
        try:
            # No file access beyond the store and its segments: sql() may come from an
            # HTTP request.
            allow_segments(connection, path)
            connection.execute("SET TimeZone = 'UTC'").fetchall()
        except duckdb.Error as error:
            connection.close()
            raise StoreError(_cannot_open(path, error)) from error
        return connection

    def close(self) -> None:
        """Release the file."""
        self._connection.close()

    def _stored_reading_columns(self) -> list[str]:
        """The reading columns of the pipelines that store readings, for an empty view."""
        if not self._has_table(PIPELINES):
            return []
        rows = self._rows(f"SELECT reading_columns FROM {PIPELINES} WHERE stores_readings", [])
        return list(dict.fromkeys(str(c) for row in rows for c in row[0] or ()))

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- what is stored ----------------------------------------------------------------------
    def pipelines(self) -> pl.DataFrame:
        """One row per pipeline and active step: its results table, key columns and outputs."""
        if not self._has_table(PIPELINES):
            return pl.DataFrame(
                schema={
                    "pipeline": pl.String(),
                    "step": pl.String(),
                    "results_table": pl.String(),
                    "key_columns": pl.List(pl.String()),
                    "outputs": pl.List(pl.String()),
                    "stores_readings": pl.Boolean(),
                }
            )
        return self._frame(
            "SELECT p.pipeline, s.step, s.results_table, s.key_columns, s.outputs, "
            f"p.stores_readings FROM {PIPELINES} AS p LEFT JOIN {PIPELINE_STEPS} AS s "
            "ON s.pipeline = p.pipeline AND s.active ORDER BY p.pipeline, s.step"
        )

    def _check_pipeline(self, name: str) -> None:
        self.pipeline(name)

    def reading_schema(self) -> pl.Schema:
        """The columns of the view ``readings`` and their types (kept until it is made again)."""
        if self._reading_schema is None:
            self._reading_schema = self._frame(f"SELECT * FROM {READINGS} LIMIT 0").schema
        return self._reading_schema

    def reading_measurements(self, pipeline: str) -> list[str]:
        """The measurement and tag columns stored for ``pipeline``'s raw readings.

        Kept until the view is made again: what a sink records about its pipeline changes
        only when it opens the file, before a store reads through its connection, and no
        sink opens a file another process's store has open.
        """
        if pipeline not in self._measurements:
            stored = self.pipeline(pipeline)
            present = set(self.reading_schema())  # always a view
            bookkeeping = {"pipeline", "partition", "position", "stream", DEVICE, TS, "message_id"}
            self._measurements[pipeline] = [
                c for c in stored.reading_columns if c in present and c not in bookkeeping
            ]
        return list(self._measurements[pipeline])

    def pipeline(self, name: str) -> StoredPipeline:
        """What the sink recorded about one pipeline; the error lists the ones there are."""
        rows = []
        if self._has_table(PIPELINES):
            rows = self._rows(
                f"SELECT reading_columns, stores_readings FROM {PIPELINES} WHERE pipeline = ?",
                [name],
            )
        if not rows:
            known = self.pipelines()["pipeline"].unique().sort().to_list()
            listed = ", ".join(repr(p) for p in known) or "none yet"
            msg = f"no pipeline {name!r} in {self.path}; pipelines stored there: {listed}"
            raise StoreError(msg)
        steps = self._rows(
            f"SELECT step, results_table, key_columns, outputs, active FROM {PIPELINE_STEPS} "
            "WHERE pipeline = ? ORDER BY step",
            [name],
        )
        row = rows[0]
        return StoredPipeline(
            name=name,
            reading_columns=tuple(row[0]),
            stores_readings=bool(row[1]),
            steps=tuple(
                StoredStep(str(s), str(t), tuple(k), tuple(o), bool(a)) for s, t, k, o, a in steps
            ),
        )

    # -- results -------------------------------------------------------------------------
    def results(
        self,
        pipeline: str,
        step: str | None = None,
        *,
        key: Mapping[str, KeyValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 1000,
    ) -> pl.DataFrame:
        """The ``limit`` latest window results, by ``window_start``, oldest first.

        Args:
            pipeline: The pipeline's name.
            step: One step; None reads every active step, with a ``step`` column first.
            key: Key column values to match exactly (None matches a null key).
            since: Only windows starting at or after this (timezone-aware) time.
            until: Only windows starting before this (timezone-aware) time.
            limit: At most this many rows; None for all.
        """
        stored = self.pipeline(pipeline)
        steps = [stored.step(step)] if step is not None else [s for s in stored.steps if s.active]
        key = dict(key or {})
        for chosen in steps:
            unknown = [column for column in key if column not in chosen.key]
            if unknown:
                msg = (
                    f"{unknown[0]!r} is not a key column of step {chosen.name!r} "
                    f"(its key: {list(chosen.key) or 'none'}); filter by key columns only"
                )
                raise StoreError(msg)
        conditions, parameters = _time_range(START, since, until)
        for column, value in key.items():
            if value is None:
                conditions.append(f"{quote(column)} IS NULL")
            else:
                conditions.append(f"{quote(column)} = ?")
                parameters.append(value)
        where = " AND ".join(conditions) or "true"
        selects: list[str] = []
        all_parameters: list[object] = []
        for chosen in steps:
            if not self._has_table(chosen.table):
                continue  # no result written yet
            label = "? AS step, " if step is None else ""
            selects.append(f"SELECT {label}* FROM {quote(chosen.table)} WHERE {where}")
            all_parameters += ([chosen.name] if step is None else []) + parameters
        if not selects:
            return _empty_results(steps, with_step=step is None)
        query = " UNION ALL BY NAME ".join(selects)
        keys = list(dict.fromkeys(c for s in steps for c in s.key))
        leading = ["step", *keys] if step is None else keys
        frame = self._latest(query, all_parameters, [START, *leading], limit)
        return frame.select(*leading, pl.exclude(leading))

    def counts(self, pipeline: str) -> StoreCounts:
        """How many readings, dead letters, late readings and results a pipeline stored."""
        stored = self.pipeline(pipeline)

        def count(table: str, condition: str, parameters: Sequence[object]) -> int:
            if not self._has_table(table):
                return 0
            rows = self._rows(f"SELECT count(*) FROM {quote(table)} WHERE {condition}", parameters)
            return int(rows[0][0])

        mine = ("pipeline = ?", [pipeline])
        [(readings,)] = self._rows(
            f"SELECT count(*) FROM {READINGS} WHERE pipeline = ?", [pipeline]
        )
        return StoreCounts(
            readings=int(readings),
            dead_letters=count(DEAD_LETTERS, *mine),
            late_readings=count(LATE_READINGS, *mine),
            results={s.name: count(s.table, "true", []) for s in stored.steps if s.active},
        )

    def counters(self, pipeline: str) -> dict[str, int]:
        """The run's counters as of the sink's last flush, added up over partitions.

        ``lines``, ``accepted``, ``duplicates``, ``late``, ``dead_letters``, ``blank``,
        ``late:<step>`` and ``dead_letters:<reason code>``; see
        :mod:`sensorstream.runtime.counters`.
        """
        self.pipeline(pipeline)
        if not self._has_table(COUNTERS):
            return {}
        rows = self._rows(
            f"SELECT counter, sum(value) FROM {COUNTERS} WHERE pipeline = ? "
            "GROUP BY counter ORDER BY counter",
            [pipeline],
        )
        return {str(name): int(value) for name, value in rows}

    # -- anything else -----------------------------------------------------------------------
    def sql(
        self, query: str, parameters: SqlParameters = None, *, limit: int | None = None
    ) -> pl.DataFrame:
        """Run one read-only SQL query; ``?`` or ``$name`` placeholders take ``parameters``.

        ``limit`` cuts the answer to that many rows, without fetching the rest.

        One ``SELECT`` or ``EXPLAIN`` of one, and nothing else
        (:func:`~sensorstream.store.reads_only.check_reads_only`).
        """
        check_reads_only(self._connection, query)
        return self._frame(query, parameters, limit=limit)

    def command(
        self,
        sql: str | None = None,
        pipeline: str | None = None,
        step: str | None = None,
        limit: int = 20,
    ) -> pl.DataFrame:
        """What ``sensorstream query`` shows, at most ``limit`` rows of it.

        The SQL's rows; else a pipeline's latest results; else the pipelines stored.
        """
        if sql is not None:
            frame = self.sql(sql, limit=limit)
        elif pipeline is not None:
            frame = self.results(pipeline, step=step, limit=limit)
        else:
            frame = self.pipelines()
        return frame.head(limit)

    # -- plumbing --------------------------------------------------------------------------
    def _frame(
        self, query: str, parameters: SqlParameters = None, *, limit: int | None = None
    ) -> pl.DataFrame:
        try:
            relation = self._connection.sql(query, params=parameters)
            if limit is not None:
                relation = relation.limit(limit)
            frame: pl.DataFrame = relation.pl()
        except duckdb.Error as error:
            msg = f"query on {self.path} failed: {error}"
            raise StoreError(msg) from error
        return frame

    def _latest(
        self, query: str, parameters: list[object], order: Sequence[str], limit: int | None
    ) -> pl.DataFrame:
        """The last ``limit`` rows of the query sorted by ``order`` (nulls last), in order."""
        if limit is not None and limit < 0:
            msg = f"limit must be zero or more, got {limit}"
            raise StoreError(msg)
        if limit is not None:
            # Exactly the reverse order, so ties are cut where the final sort puts them.
            backwards = ", ".join(f"{quote(c)} DESC NULLS FIRST" for c in order)
            query = f"SELECT * FROM ({query}) ORDER BY {backwards} LIMIT ?"
            parameters = [*parameters, limit]
        return self._frame(query, parameters).sort(order, nulls_last=True)

    def _has_table(self, table: str) -> bool:
        rows = self._rows(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE database_name = current_database() AND table_name = ?",
            [table],
        )
        return int(rows[0][0]) > 0

    def _rows(self, query: str, parameters: Sequence[object]) -> list[tuple[Any, ...]]:
        """Small results as tuples, fetched to the end (DuckDB wants that before the next)."""
        try:
            return self._connection.execute(query, parameters).fetchall()
        except duckdb.Error as error:
            msg = f"query on {self.path} failed: {error}"
            raise StoreError(msg) from error


def _time_range(
    column: str, since: datetime | None, until: datetime | None
) -> tuple[list[str], list[object]]:
    conditions: list[str] = []
    parameters: list[object] = []
    for name, moment, operator in (("since", since, ">="), ("until", until, "<")):
        if moment is None:
            continue
        if moment.tzinfo is None or moment.utcoffset() is None:
            msg = f"{name}={moment.isoformat()} has no time zone; pass an aware datetime"
            raise StoreError(msg)
        conditions.append(f"{quote(column)} {operator} ?")
        parameters.append(moment)
    return conditions, parameters


def _empty_results(steps: Sequence[StoredStep], *, with_step: bool) -> pl.DataFrame:
    """Result columns with no rows, for steps that have not written a result yet."""
    schema: dict[str, pl.DataType] = {"step": pl.String()} if with_step else {}
    for step in steps:
        schema.update(dict.fromkeys(step.key, pl.Null()))
    schema |= {START: TS_TYPE, END: TS_TYPE}
    for step in steps:
        schema.update(dict.fromkeys(step.outputs, pl.Null()))
    schema |= {"revision": pl.Int64(), "final": pl.Boolean(), UPDATED_AT: TS_TYPE}
    return pl.DataFrame(schema=schema)


def _cannot_open(path: Path, error: BaseException) -> str:
    text = str(error)
    if "lock" in text.lower():
        return (
            f"cannot read {path}: a running pipeline has it open for writing, and DuckDB "
            "lets no other process open it meanwhile; ask the pipeline's API (sensorstream "
            "query does when the pipeline serves one), or query it once the pipeline stopped"
        )
    if "different configuration" in text:
        return (
            f"cannot read {path}: this process already has it open for writing (a DuckDB "
            "sink); close the sink first"
        )
    return f"cannot read {path}: {text}"
