"""The DuckDB sink: results, dead letters and counters in one file; raw readings beside it.

Every table carries the pipeline's name, so several pipelines can share a file::

    pipelines        pipeline -> its reading columns, whether it stores readings
    pipeline_steps   (pipeline, step) -> results table, key columns, outputs, active
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

Raw readings (``store_readings``, the default) are the bulk of what a pipeline stores, so
they skip DuckDB: each flush writes the readings each partition delivered since the last
one as an immutable Parquet segment (``partition, position``, then the reading's columns)
under ``<file>.segments/readings/pipeline=<name>/``, compressed in a thread of its own
while the pipeline goes on (:mod:`~sensorstream.sinks.segments` has the layout,
:mod:`~sensorstream.sinks.segment_writer` the writing). :class:`sensorstream.store.Store`
shows them as the view ``readings``, as the table of that name was before; a file written
before has its table moved into segments when a sink opens it. ``retention: {readings:
7d}`` deletes segments whose readings all lie that far (in event time) behind the newest
reading stored; window results, dead letters and late readings stay. Small segments are
merged into larger ones in the background (:mod:`~sensorstream.sinks.compaction`), so a
live pipeline's flushes do not leave thousands of files for every query to open.

Table writes are buffered and land in one transaction per :meth:`DuckDBSink.flush`, or
sooner once ``flush_rows`` rows wait (:mod:`~sensorstream.sinks.duckdb_writes`); readings
make a segment once ``flush_rows`` of them wait. ``flush`` returns once both are durable.

DuckDB lets one process open a file for writing and no other process open it meanwhile,
so query the file (``sensorstream query``, :class:`sensorstream.store.Store`) while no
pipeline writes it; a locked file fails fast with an error that says so. The segments can
be read meanwhile, without the file: :func:`sensorstream.store.scan_readings`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from sensorstream.engine.outputs import TRANSITION_SCHEMA
from sensorstream.errors import SinkError
from sensorstream.readings import DEAD_LETTER_SCHEMA
from sensorstream.sinks.base import FROM_START, PipelineInfo, Sink, SinkBatch
from sensorstream.sinks.compaction import CompactionPolicy
from sensorstream.sinks.duckdb_tables import (
    ALERT_TRANSITIONS,
    COUNTER_COLUMNS,
    COUNTERS,
    DEAD_LETTERS,
    EMITTED_AT,
    LATE_FOR,
    LATE_READINGS,
    ORIGIN_COLUMNS,
    VIEW,
    ResultsTable,
    column_types,
    ensure_table,
    existing_columns,
    expose,
    quote,
    record_pipeline,
)
from sensorstream.sinks.duckdb_writes import append, replace_counters, store_alerts, upsert
from sensorstream.sinks.legacy_readings import migrate_readings_table
from sensorstream.sinks.segment_writer import ReadingSegments

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

    dead_letters: list[pl.DataFrame] = field(default_factory=list)
    late: list[pl.DataFrame] = field(default_factory=list)
    results: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    alerts: list[pl.DataFrame] = field(default_factory=list)
    counters: dict[int, Mapping[str, int]] = field(default_factory=dict)  # latest per partition
    rows: int = 0

    def add(self, frames: list[pl.DataFrame], frame: pl.DataFrame) -> None:
        frames.append(frame)
        self.rows += frame.height


@dataclass
class _PendingReadings:
    """Raw readings waiting for their next segment, per partition."""

    frames: dict[int, list[pl.DataFrame]] = field(default_factory=dict)
    rows: int = 0

    def add(self, partition: int, frame: pl.DataFrame) -> None:
        self.frames.setdefault(partition, []).append(frame)
        self.rows += frame.height


class DuckDBSink(Sink):
    """Stores a pipeline's output in a DuckDB file that :mod:`sensorstream.store` reads back.

    ``store_readings=False`` keeps only dead letters, late readings and results.
    ``retention`` deletes raw readings that far behind the newest one stored (None keeps
    them all). ``compaction`` says when small reading segments are merged (None: never).
    ``clock`` stamps ``updated_at`` on results.
    """

    def __init__(
        self,
        path: Path | str,
        store_readings: bool = True,
        *,
        flush_rows: int = 200_000,
        retention: timedelta | None = None,
        compaction: CompactionPolicy | None = CompactionPolicy(),  # noqa: B008 (frozen)
        clock: Clock = _utc_now,
    ) -> None:
        self.path = Path(path)
        self.store_readings = store_readings
        self.flush_rows = flush_rows
        self.retention = retention
        self.compaction = compaction
        self._clock = clock
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._pipeline = ""
        self._reading_columns: list[str] = []
        self._tables: dict[str, ResultsTable] = {}
        self._pending = _Pending()
        self._readings = _PendingReadings()
        self._segments: ReadingSegments | None = None

    # -- the sink contract -----------------------------------------------------------------
    def open(self, pipeline: PipelineInfo) -> None:
        """Open (or create) the file, the tables and the segment folder this pipeline writes.

        A store written before readings moved to segments has its ``readings`` table
        moved into segments here (:mod:`~sensorstream.sinks.legacy_readings`).
        """
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
                migrate_readings_table(con, self.path)
                tables: dict[str, Mapping[str, str]] = {}
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
            segments = ReadingSegments(
                self.path, pipeline.name, retention=self.retention, compaction=self.compaction
            )
            segments.open()
        except BaseException:
            connection.close()  # a sink that failed to open holds no lock
            self._connection = None
            raise
        self._segments = segments

    def restore(self, positions: Mapping[int, int]) -> None:
        """Delete these partitions' rows after their positions; other partitions keep theirs.

        A partition at :data:`~sensorstream.sinks.base.FROM_START` is about to be read from
        its beginning, so everything stored for it goes, its results and counters too (its
        windows are all recomputed). Otherwise results need nothing: the replay re-emits
        them, and writing a result again replaces it. Raw readings are segments: those
        after a position are deleted, one that straddles it is rewritten without its later
        rows. Partitions not named may be another worker's: nothing of theirs is touched.
        """
        if not positions:
            return
        self._write_pending()
        self._require_segments().restore(positions)
        kept = pl.DataFrame(
            {"partition": list(positions), "position": list(positions.values())},
            schema={"partition": pl.Int32(), "position": pl.Int64()},
        )
        from_start = [p for p, position in positions.items() if position == FROM_START]
        with self._transaction("forgetting output after the checkpoint") as con:
            expose(con, kept)
            for table in (DEAD_LETTERS, LATE_READINGS, ALERT_TRANSITIONS):
                if existing_columns(con, table) is None:
                    continue
                con.execute(
                    f"DELETE FROM {quote(table)} AS stored WHERE stored.pipeline = ? AND "
                    f"EXISTS (SELECT 1 FROM {VIEW} AS kept WHERE kept.partition = "
                    "stored.partition AND stored.position > kept.position)",
                    [self._pipeline],
                )
            if from_start:
                con.execute(
                    f"DELETE FROM {COUNTERS} WHERE pipeline = ? AND list_contains(?, partition)",
                    [self._pipeline, from_start],
                )
                for results in self._tables.values():
                    # Rows stored before results carried their partition have none: a
                    # partition read again from its start replaces them key by key instead.
                    if "partition" in (existing_columns(con, results.name) or {}):
                        con.execute(
                            f"DELETE FROM {quote(results.name)} WHERE list_contains(?, partition)",
                            [from_start],
                        )
                    results.latest_start = None
                    results.columns = None

    def write(self, batch: SinkBatch) -> None:
        """Buffer one batch's output; write it once ``flush_rows`` rows are waiting.

        Raw readings and the tables count apart: ``flush_rows`` readings make a segment
        (written in the background), ``flush_rows`` other rows a transaction.
        """
        self._require_open()
        origin = [
            pl.lit(batch.partition, pl.Int32).alias("partition"),
            pl.lit(batch.position, pl.Int64).alias("position"),
        ]
        pending = self._pending
        if self.store_readings and batch.readings is not None and batch.readings.height:
            columns = [c for c in batch.readings.columns if c in self._reading_columns]
            self._readings.add(batch.partition, batch.readings.select(columns).with_columns(origin))
            if self._readings.rows >= self.flush_rows:
                self._write_readings()
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
                tagged = results.with_columns(origin[0])  # what a partition's restart forgets
                pending.add(pending.results.setdefault(step, []), tagged)
        for transitions in batch.alerts.values():
            if transitions.height:
                columns = [c for c in TRANSITION_SCHEMA if c in transitions.columns]
                pending.add(pending.alerts, transitions.select(columns).with_columns(origin))
        if batch.counters is not None:
            pending.counters[batch.partition] = batch.counters
        if pending.rows >= self.flush_rows:
            self._write_pending()

    def flush(self) -> None:
        """Write everything buffered: a segment per partition, and one transaction.

        Returns once the segments too are durable; the segments compress in their thread
        while the transaction commits.
        """
        if self._connection is not None:
            self._write_pending()
            self._require_segments().flush()

    def flush_started(self) -> Callable[[], None]:
        """Take what waits to be written; the call returned commits it and waits for the fsyncs.

        The call runs in the checkpointer's thread, on a cursor of its own: the buffered
        rows are this flush's alone (the next ones buffer anew), and no other flush runs
        meanwhile (the runner has one checkpoint in flight at a time).
        """
        connection = self._connection
        if connection is None:
            return super().flush_started()
        self._write_readings()
        pending, self._pending = self._pending, _Pending()
        segments = self._require_segments().flush_started()

        def wait() -> None:
            cursor = connection.cursor()
            try:
                self._commit(pending, cursor)
            finally:
                cursor.close()
            segments()

        return wait

    def close(self) -> None:
        """Flush, then release the file for other processes."""
        if self._connection is None:
            return
        try:
            self._write_pending()
        finally:
            try:
                if self._segments is not None:
                    self._segments.close()
                    self._segments = None
            finally:
                self._connection.close()
                self._connection = None

    # -- writing ---------------------------------------------------------------------------
    def _write_readings(self) -> None:
        """Hand the waiting readings to the segment writer, one segment per partition."""
        readings, self._readings = self._readings, _PendingReadings()
        segments = self._require_segments()
        for partition, frames in readings.frames.items():
            segments.write(partition, frames)

    def _write_pending(self) -> None:
        self._write_readings()  # first: the segments compress while the transaction runs
        # Taken off first: after a failed write the runtime replays from its checkpoint.
        pending, self._pending = self._pending, _Pending()
        self._commit(pending, self._require_open())

    def _commit(self, pending: _Pending, connection: duckdb.DuckDBPyConnection) -> None:
        """Write ``pending`` in one transaction on ``connection`` (or a cursor of it)."""
        if pending.rows == 0 and not pending.counters:
            return
        with self._transaction("writing a batch", connection) as con:
            append(con, self._pipeline, DEAD_LETTERS, pending.dead_letters)
            append(con, self._pipeline, LATE_READINGS, pending.late)
            updated_at = self._clock()
            for step, frames in pending.results.items():
                upsert(con, self._tables[step], frames, updated_at)
            store_alerts(con, self._pipeline, pending.alerts, updated_at)
            replace_counters(con, self._pipeline, pending.counters)

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the open file, to read it while the pipeline writes it.

        DuckDB lets no other process in, but cursors of this connection may read from
        other threads: each sees what the last flush committed (the API reads this way).
        """
        return self._require_open().cursor()

    # -- plumbing --------------------------------------------------------------------------
    def _require_segments(self) -> ReadingSegments:
        if self._segments is None:
            msg = f"the DuckDB sink for {self.path} is not open; call open() first"
            raise SinkError(msg)
        return self._segments

    def _require_open(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            msg = f"the DuckDB sink for {self.path} is not open; call open() first"
            raise SinkError(msg)
        return self._connection

    @contextmanager
    def _transaction(
        self, doing: str, connection: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connection if connection is not None else self._require_open()
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
