"""The DuckDB sink: readings, dead letters, late readings, window results and counters in one file.

Every table carries the pipeline's name, so several pipelines can share a file::

    pipelines        pipeline -> its reading columns, whether it stores readings
    pipeline_steps   (pipeline, step) -> results table, key columns, outputs, active
    readings         pipeline, partition, position, then the canonical reading columns
    dead_letters     pipeline, partition, position, reason_code, reason, origin, raw (BLOB),
                     raw_length, raw_sha256, arrived_at
    late_readings    pipeline, partition, position, late_for, then the reading columns
    counters         pipeline, partition, counter, value: the run's counters as of the
                     last flush (lines, accepted, late:<step>, dead_letters:<code>, ...)
    alert_transitions
                     pipeline, partition, position, transition_id, alert_id, rule, key (JSON),
                     state, previous_state, severity, event_time, started_at, value, reason,
                     sequence, kind, emitted_at: one row per transition id
    results_<pipeline>_<step>
                     key columns, window_start, window_end, outputs, revision, final,
                     updated_at: one row per key and window

Writes are buffered and land in one transaction per :meth:`DuckDBSink.flush`, or sooner
once ``flush_rows`` rows wait; frames are appended through Arrow, never row by row. A
results table has no PRIMARY KEY: a key column may be null (readings without a tag form a
group of their own) while DuckDB makes primary-key columns NOT NULL. The sink keeps one
row per key and window itself (delete, then insert), which also runs about twice as fast
as ``INSERT OR REPLACE`` on an indexed table.

DuckDB lets one process open a file for writing and no other process open it meanwhile,
so query the file (``sensorstream query``, :class:`sensorstream.store.Store`) while no
pipeline writes it; a locked file fails fast with an error that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import duckdb
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from sensorstream.engine.outputs import OP, START, TRANSITION_SCHEMA
from sensorstream.errors import SinkError
from sensorstream.readings import DEAD_LETTER_SCHEMA
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch
from sensorstream.sinks.duckdb_tables import (
    ALERT_TRANSITIONS,
    COUNTER_COLUMNS,
    COUNTERS,
    DEAD_LETTERS,
    EMITTED_AT,
    LATE_FOR,
    LATE_READINGS,
    ORIGIN_COLUMNS,
    READINGS,
    UPDATED_AT,
    VIEW,
    ResultsTable,
    column_types,
    ensure_results_table,
    ensure_table,
    existing_columns,
    expose,
    quote,
    record_pipeline,
)

Clock = Callable[[], datetime]
_CONNECTION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    # Inserts may then use every thread; stored row order means nothing to the sink.
    "SET preserve_insertion_order = false",
    # A checkpoint rewrites every row group touched since the last one and blocks the commit
    # that triggers it; at DuckDB's 16MB default, result upserts checkpoint every few flushes.
    "SET checkpoint_threshold = '256MB'",
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Pending:
    """Frames waiting for the next write, in arrival order."""

    readings: list[pl.DataFrame] = field(default_factory=list)
    dead_letters: list[pl.DataFrame] = field(default_factory=list)
    late: list[pl.DataFrame] = field(default_factory=list)
    results: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    alerts: list[pl.DataFrame] = field(default_factory=list)
    counters: dict[int, Mapping[str, int]] = field(default_factory=dict)  # latest per partition
    rows: int = 0

    def add(self, frames: list[pl.DataFrame], frame: pl.DataFrame) -> None:
        frames.append(frame)
        self.rows += frame.height


class DuckDBSink(Sink):
    """Stores a pipeline's output in a DuckDB file that :mod:`sensorstream.store` reads back.

    ``store_readings=False`` keeps only dead letters, late readings and results, which is
    what a high-rate pipeline usually wants. ``clock`` stamps ``updated_at`` on results.
    """

    def __init__(
        self,
        path: Path | str,
        store_readings: bool = True,
        *,
        flush_rows: int = 200_000,
        clock: Clock = _utc_now,
    ) -> None:
        self.path = Path(path)
        self.store_readings = store_readings
        self.flush_rows = flush_rows
        self._clock = clock
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._pipeline = ""
        self._reading_columns: list[str] = []
        self._tables: dict[str, ResultsTable] = {}
        self._pending = _Pending()

    # -- the sink contract -----------------------------------------------------------------
    def open(self, pipeline: PipelineInfo) -> None:
        """Open (or create) the file and the tables this pipeline writes."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = duckdb.connect(str(self.path))
        except (duckdb.Error, OSError) as error:
            raise SinkError(_cannot_open(self.path, error)) from error
        for setting in _CONNECTION_SETTINGS:
            connection.execute(setting)
        self._connection = connection
        self._pipeline = pipeline.name
        self._reading_columns = list(pipeline.reading_schema)
        try:
            with self._transaction(f"preparing tables for pipeline {pipeline.name!r}") as con:
                reading_schema = pl.DataFrame(schema=dict(pipeline.reading_schema))
                reading_types = column_types(con, reading_schema)
                dead_types = column_types(con, pl.DataFrame(schema=DEAD_LETTER_SCHEMA))
                tables: dict[str, Mapping[str, str]] = {}
                if self.store_readings:
                    tables[READINGS] = {**ORIGIN_COLUMNS, **reading_types}
                tables[DEAD_LETTERS] = {**ORIGIN_COLUMNS, **dead_types}
                tables[LATE_READINGS] = {**ORIGIN_COLUMNS, LATE_FOR: "VARCHAR", **reading_types}
                tables[COUNTERS] = COUNTER_COLUMNS
                transition_types = column_types(con, pl.DataFrame(schema=TRANSITION_SCHEMA))
                tables[ALERT_TRANSITIONS] = {
                    **ORIGIN_COLUMNS,
                    **transition_types,
                    EMITTED_AT: "TIMESTAMP WITH TIME ZONE",
                }
                for table, columns in tables.items():
                    ensure_table(con, table, columns, path=self.path, pipeline=pipeline.name)
                self._tables = record_pipeline(
                    con, pipeline, stores_readings=self.store_readings, path=self.path
                )
        except BaseException:
            connection.close()  # a sink that failed to open holds no lock
            self._connection = None
            raise

    def restore(self, positions: Mapping[int, int]) -> None:
        """Delete stored rows after these positions; a partition not listed loses all its rows.

        A partition missing from ``positions`` is about to be read from its beginning, so
        everything stored for it would otherwise be stored twice. Results need nothing:
        the replay re-emits them, and writing a result again replaces it; only a fresh start
        (no positions at all) clears them, since its windows are all recomputed.
        """
        self._write_pending()
        kept = pl.DataFrame(
            {"partition": list(positions), "position": list(positions.values())},
            schema={"partition": pl.Int32(), "position": pl.Int64()},
        )
        with self._transaction("forgetting output after the checkpoint") as con:
            expose(con, kept)
            for table in (READINGS, DEAD_LETTERS, LATE_READINGS, ALERT_TRANSITIONS):
                if existing_columns(con, table) is None:
                    continue
                con.execute(
                    f"DELETE FROM {quote(table)} AS stored WHERE stored.pipeline = ? AND NOT "
                    f"EXISTS (SELECT 1 FROM {VIEW} AS kept WHERE kept.partition = "
                    "stored.partition AND stored.position <= kept.position)",
                    [self._pipeline],
                )
            if not positions:  # a fresh start: results too are about to be recomputed
                con.execute(f"DELETE FROM {COUNTERS} WHERE pipeline = ?", [self._pipeline])
                for results in self._tables.values():
                    if existing_columns(con, results.name) is not None:
                        con.execute(f"DELETE FROM {quote(results.name)}")

    def write(self, batch: SinkBatch) -> None:
        """Buffer one batch's output; write it all once ``flush_rows`` rows are waiting."""
        self._require_open()
        origin = [
            pl.lit(batch.partition, pl.Int32).alias("partition"),
            pl.lit(batch.position, pl.Int64).alias("position"),
        ]
        pending = self._pending
        if self.store_readings and batch.readings is not None and batch.readings.height:
            columns = [c for c in batch.readings.columns if c in self._reading_columns]
            pending.add(pending.readings, batch.readings.select(columns).with_columns(origin))
        if batch.dead_letters is not None and batch.dead_letters.height:
            frame = batch.dead_letters.select(*DEAD_LETTER_SCHEMA).with_columns(origin)
            pending.add(pending.dead_letters, frame)
        if batch.late is not None and batch.late.height:
            late_columns = [LATE_FOR, *self._reading_columns]
            columns = [c for c in batch.late.columns if c in late_columns]
            pending.add(pending.late, batch.late.select(columns).with_columns(origin))
        for step, results in batch.results.items():
            if step not in self._tables:
                declared = ", ".join(sorted(self._tables)) or "none"
                msg = (
                    f"results for step {step!r}, which pipeline {self._pipeline!r} did not "
                    f"declare when the sink opened (declared: {declared})"
                )
                raise SinkError(msg)
            if results.height:
                pending.add(pending.results.setdefault(step, []), results)
        for transitions in batch.alerts.values():
            if transitions.height:
                columns = [c for c in TRANSITION_SCHEMA if c in transitions.columns]
                pending.add(pending.alerts, transitions.select(columns).with_columns(origin))
        if batch.counters is not None:
            pending.counters[batch.partition] = batch.counters
        if pending.rows >= self.flush_rows:
            self._write_pending()

    def flush(self) -> None:
        """Write everything buffered in one transaction and commit it."""
        if self._connection is not None:
            self._write_pending()

    def close(self) -> None:
        """Flush, then release the file for other processes."""
        if self._connection is None:
            return
        try:
            self._write_pending()
        finally:
            self._connection.close()
            self._connection = None

    # -- writing ---------------------------------------------------------------------------
    def _write_pending(self) -> None:
        # Taken off first: after a failed write the runtime replays from its checkpoint.
        pending, self._pending = self._pending, _Pending()
        if pending.rows == 0 and not pending.counters:
            return
        with self._transaction("writing a batch") as con:
            self._append(con, READINGS, pending.readings)
            self._append(con, DEAD_LETTERS, pending.dead_letters)
            self._append(con, LATE_READINGS, pending.late)
            updated_at = self._clock()
            for step, frames in pending.results.items():
                self._upsert(con, self._tables[step], frames, updated_at)
            self._store_alerts(con, pending.alerts, updated_at)
            self._replace_counters(con, pending.counters)

    def _append(
        self, con: duckdb.DuckDBPyConnection, table: str, frames: Sequence[pl.DataFrame]
    ) -> None:
        if not frames:
            return
        expose(con, pl.concat(frames, how="diagonal_relaxed", rechunk=False))
        con.execute(
            f"INSERT INTO {quote(table)} BY NAME SELECT ? AS pipeline, * FROM {VIEW}",
            [self._pipeline],
        )

    def _upsert(
        self,
        con: duckdb.DuckDBPyConnection,
        table: ResultsTable,
        frames: Sequence[pl.DataFrame],
        updated_at: datetime,
    ) -> None:
        """Apply results in arrival order: per key and window the last row wins."""
        results = pl.concat(frames, how="diagonal_relaxed")
        if OP not in results.columns:
            results = results.with_columns(pl.lit("upsert").alias(OP))
        known_op = results[OP].is_in(["upsert", "delete"])
        if not known_op.all():
            unknown = sorted(set(results.filter(~known_op)[OP].to_list()), key=str)
            msg = (
                f"results for table {table.name} have {OP} values {unknown}; "
                "allowed: upsert, delete"
            )
            raise SinkError(msg)
        latest = results.unique(subset=[*table.key, START], keep="last", maintain_order=False)
        ensure_results_table(con, table, latest.drop(OP))
        first, last = latest.select(pl.col(START).min(), pl.col(START).max().alias("last")).row(0)
        columns = ", ".join(quote(c) for c in latest.columns if c != OP)
        expose(con, latest)
        if table.latest_start is not None and first <= table.latest_start:
            same_window = " AND ".join(
                f"stored.{quote(column)} IS NOT DISTINCT FROM new.{quote(column)}"
                for column in (*table.key, START)
            )
            # The range lets DuckDB skip row groups by their min/max before the join.
            con.execute(
                f"DELETE FROM {quote(table.name)} AS stored USING {VIEW} AS new "
                f"WHERE stored.{START} BETWEEN ? AND ? AND {same_window}",
                [first, last],
            )
        con.execute(
            f"INSERT INTO {quote(table.name)} BY NAME SELECT {columns}, ? AS {UPDATED_AT} "
            f"FROM {VIEW} WHERE {quote(OP)} = 'upsert'",
            [updated_at],
        )
        if table.latest_start is None or last > table.latest_start:
            table.latest_start = last

    def _store_alerts(
        self, con: duckdb.DuckDBPyConnection, frames: Sequence[pl.DataFrame], emitted_at: datetime
    ) -> None:
        """Store transitions once each: one replayed after a crash replaces itself."""
        if not frames:
            return
        transitions = pl.concat(frames, how="diagonal_relaxed").unique(
            "transition_id", keep="last", maintain_order=True
        )
        expose(con, transitions)
        con.execute(
            f"DELETE FROM {ALERT_TRANSITIONS} AS stored USING {VIEW} AS new "
            "WHERE stored.pipeline = ? AND stored.transition_id = new.transition_id",
            [self._pipeline],
        )
        con.execute(
            f"INSERT INTO {ALERT_TRANSITIONS} BY NAME SELECT ? AS pipeline, *, "
            f"? AS {EMITTED_AT} FROM {VIEW}",
            [self._pipeline, emitted_at],
        )

    def _replace_counters(
        self, con: duckdb.DuckDBPyConnection, counters: Mapping[int, Mapping[str, int]]
    ) -> None:
        """Store each partition's latest counters in place of what it had."""
        if not counters:
            return
        frame = pl.DataFrame(
            [
                (partition, name, value)
                for partition, counts in counters.items()
                for name, value in counts.items()
            ],
            schema={"partition": pl.Int32(), "counter": pl.String(), "value": pl.Int64()},
            orient="row",
        )
        con.execute(
            f"DELETE FROM {COUNTERS} WHERE pipeline = ? AND list_contains(?, partition)",
            [self._pipeline, list(counters)],
        )
        expose(con, frame)
        con.execute(
            f"INSERT INTO {COUNTERS} BY NAME SELECT ? AS pipeline, * FROM {VIEW}",
            [self._pipeline],
        )

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the open file, to read it while the pipeline writes it.

        DuckDB lets no other process in, but cursors of this connection may read from
        other threads: each sees what the last flush committed (the API reads this way).
        """
        return self._require_open().cursor()

    # -- plumbing --------------------------------------------------------------------------
    def _require_open(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            msg = f"the DuckDB sink for {self.path} is not open; call open() first"
            raise SinkError(msg)
        return self._connection

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._require_open()
        con.begin()
        try:
            yield con
            con.commit()
        except BaseException as error:
            con.rollback()
            for table in self._tables.values():
                table.columns = None  # what this transaction created or wrote is gone again
            if isinstance(error, duckdb.Error):
                msg = f"{doing} in {self.path} failed: {error}"
                raise SinkError(msg) from error
            raise


def _cannot_open(path: Path, error: BaseException) -> str:
    if "lock" in str(error).lower():
        return (
            f"cannot open {path} for writing: another process has it open (a running "
            f"pipeline or `sensorstream query`?); stop it or write to another file ({error})"
        )
    return f"cannot open {path} for writing: {error}"


class DuckDBSinkSettings(BaseModel):
    """``sink: {type: duckdb, path: ..., store_readings: ...}`` in a pipeline's YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["duckdb"] = "duckdb"
    path: Path = Path("sensorstream.duckdb")
    store_readings: bool = True
    flush_rows: int = Field(default=200_000, gt=0)

    def build(self) -> DuckDBSink:
        """The sink these settings describe."""
        return DuckDBSink(self.path, self.store_readings, flush_rows=self.flush_rows)
