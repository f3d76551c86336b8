"""The DuckDB sink: readings, dead letters, late readings and window results in one file.

Every table carries the pipeline's name, so several pipelines can share a file::

    pipelines        pipeline -> its reading columns, whether it stores readings
    pipeline_steps   (pipeline, step) -> results table, key columns, outputs, active
    readings         pipeline, partition, position, then the canonical reading columns
    dead_letters     pipeline, partition, position, reason_code, reason, origin, raw (BLOB),
                     raw_length, raw_sha256, arrived_at
    late_readings    pipeline, partition, position, late_for, then the reading columns
    counters         pipeline, partition, counter, value: the run's counters as of the
                     last flush (lines, accepted, late:<step>, dead_letters:<code>, ...)
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

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import duckdb
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from sensorstream.engine.windows.base import OP, START
from sensorstream.errors import SinkError
from sensorstream.readings import DEAD_LETTER_SCHEMA
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch

Clock = Callable[[], datetime]

PIPELINES = "pipelines"
PIPELINE_STEPS = "pipeline_steps"
READINGS = "readings"
DEAD_LETTERS = "dead_letters"
LATE_READINGS = "late_readings"
COUNTERS = "counters"
LATE_FOR = "late_for"
UPDATED_AT = "updated_at"
# Where each stored row came from: what restore() truncates by.
ORIGIN_COLUMNS = {"pipeline": "VARCHAR", "partition": "INTEGER", "position": "BIGINT"}
_VIEW = "__sensorstream_frame"  # the name an Arrow frame is scanned under while written
_CONNECTION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    # Inserts may then use every thread; stored row order means nothing to the sink.
    "SET preserve_insertion_order = false",
    # A checkpoint rewrites every row group touched since the last one and blocks the commit
    # that triggers it; at DuckDB's 16MB default, result upserts checkpoint every few flushes.
    "SET checkpoint_threshold = '256MB'",
)


def quote(identifier: str) -> str:
    """An SQL identifier in double quotes, safe for any name (spaces, quotes, keywords)."""
    return '"' + identifier.replace('"', '""') + '"'


def results_table_name(pipeline: str, step: str) -> str:
    """The readable table name for a step's results, before any clash is resolved.

    >>> results_table_name("Cold Chain", "Ø temp/1m")
    'results_cold_chain_temp_1m'
    >>> results_table_name("Kühlkette", "p99")
    'results_kuhlkette_p99'
    """
    return f"results_{_plain(pipeline)}_{_plain(step)}"


def _plain(name: str) -> str:
    # DuckDB names are case-insensitive, so lowercase keeps two spellings from colliding.
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_") or "unnamed"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _ResultsTable:
    name: str
    key: tuple[str, ...]
    columns: set[str] | None = None  # lowercased, once the table is known to exist
    # The latest window_start stored, None if none: results of later windows replace
    # nothing, so the usual case (windows closing in time order) needs no DELETE at all.
    latest_start: datetime | None = None


@dataclass
class _Pending:
    """Frames waiting for the next write, in arrival order."""

    readings: list[pl.DataFrame] = field(default_factory=list)
    dead_letters: list[pl.DataFrame] = field(default_factory=list)
    late: list[pl.DataFrame] = field(default_factory=list)
    results: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
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
        self._tables: dict[str, _ResultsTable] = {}
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
                reading_types = _column_types(con, reading_schema)
                dead_types = _column_types(con, pl.DataFrame(schema=DEAD_LETTER_SCHEMA))
                if self.store_readings:
                    self._ensure_table(con, READINGS, {**ORIGIN_COLUMNS, **reading_types})
                self._ensure_table(con, DEAD_LETTERS, {**ORIGIN_COLUMNS, **dead_types})
                late_types = {**ORIGIN_COLUMNS, LATE_FOR: "VARCHAR", **reading_types}
                self._ensure_table(con, LATE_READINGS, late_types)
                counter_types = {"pipeline": "VARCHAR", "partition": "INTEGER"}
                counter_types |= {"counter": "VARCHAR", "value": "BIGINT"}
                self._ensure_table(con, COUNTERS, counter_types)
                self._record_pipeline(con, pipeline)
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
            _expose(con, kept)
            for table in (READINGS, DEAD_LETTERS, LATE_READINGS):
                if _existing_columns(con, table) is None:
                    continue
                con.execute(
                    f"DELETE FROM {quote(table)} AS stored WHERE stored.pipeline = ? AND NOT "
                    f"EXISTS (SELECT 1 FROM {_VIEW} AS kept WHERE kept.partition = "
                    "stored.partition AND stored.position <= kept.position)",
                    [self._pipeline],
                )
            if not positions:  # a fresh start: results too are about to be recomputed
                con.execute(f"DELETE FROM {COUNTERS} WHERE pipeline = ?", [self._pipeline])
                for results in self._tables.values():
                    if _existing_columns(con, results.name) is not None:
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
            self._replace_counters(con, pending.counters)

    def _append(
        self, con: duckdb.DuckDBPyConnection, table: str, frames: Sequence[pl.DataFrame]
    ) -> None:
        if not frames:
            return
        _expose(con, pl.concat(frames, how="diagonal_relaxed", rechunk=False))
        con.execute(
            f"INSERT INTO {quote(table)} BY NAME SELECT ? AS pipeline, * FROM {_VIEW}",
            [self._pipeline],
        )

    def _upsert(
        self,
        con: duckdb.DuckDBPyConnection,
        table: _ResultsTable,
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
        self._ensure_results_table(con, table, latest.drop(OP))
        first, last = latest.select(pl.col(START).min(), pl.col(START).max().alias("last")).row(0)
        columns = ", ".join(quote(c) for c in latest.columns if c != OP)
        _expose(con, latest)
        if table.latest_start is not None and first <= table.latest_start:
            same_window = " AND ".join(
                f"stored.{quote(column)} IS NOT DISTINCT FROM new.{quote(column)}"
                for column in (*table.key, START)
            )
            # The range lets DuckDB skip row groups by their min/max before the join.
            con.execute(
                f"DELETE FROM {quote(table.name)} AS stored USING {_VIEW} AS new "
                f"WHERE stored.{START} BETWEEN ? AND ? AND {same_window}",
                [first, last],
            )
        con.execute(
            f"INSERT INTO {quote(table.name)} BY NAME SELECT {columns}, ? AS {UPDATED_AT} "
            f"FROM {_VIEW} WHERE {quote(OP)} = 'upsert'",
            [updated_at],
        )
        if table.latest_start is None or last > table.latest_start:
            table.latest_start = last

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
        _expose(con, frame)
        con.execute(
            f"INSERT INTO {COUNTERS} BY NAME SELECT ? AS pipeline, * FROM {_VIEW}",
            [self._pipeline],
        )

    # -- tables ----------------------------------------------------------------------------
    def _record_pipeline(self, con: duckdb.DuckDBPyConnection, pipeline: PipelineInfo) -> None:
        """Record the pipeline and give each step its results table."""
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {PIPELINES} (pipeline VARCHAR PRIMARY KEY, "
            "reading_columns VARCHAR[], stores_readings BOOLEAN)"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {PIPELINE_STEPS} (pipeline VARCHAR, step VARCHAR, "
            "results_table VARCHAR, key_columns VARCHAR[], outputs VARCHAR[], active BOOLEAN, "
            "PRIMARY KEY (pipeline, step))"
        )
        con.execute(
            f"INSERT OR REPLACE INTO {PIPELINES} VALUES (?, ?, ?)",
            [pipeline.name, list(pipeline.reading_schema), self.store_readings],
        )
        rows = con.execute(
            f"SELECT step, results_table, key_columns FROM {PIPELINE_STEPS} WHERE pipeline = ?",
            [pipeline.name],
        ).fetchall()
        known = {str(step): (str(table), tuple(key)) for step, table, key in rows}
        claimed = con.execute(f"SELECT results_table FROM {PIPELINE_STEPS}").fetchall()
        taken = {name.lower() for name in _table_names(con)}
        taken |= {str(row[0]).lower() for row in claimed}
        self._tables = {}
        for step in pipeline.steps:
            if step.name in known:
                name, key = known[step.name]
                if key != step.key:
                    msg = (
                        f"step {step.name!r} of pipeline {pipeline.name!r} keyed its results by "
                        f"{list(key)} in {self.path}, and now by {list(step.key)}; drop table "
                        f"{name} there, rename the step, or use another file"
                    )
                    raise SinkError(msg)
            else:
                name = results_table_name(pipeline.name, step.name)
                if name.lower() in taken:
                    digest = hashlib.sha1(f"{pipeline.name}\0{step.name}".encode()).hexdigest()
                    name = f"{name}_{digest[:8]}"
                taken.add(name.lower())
            self._tables[step.name] = _ResultsTable(name, step.key)
            con.execute(
                f"INSERT OR REPLACE INTO {PIPELINE_STEPS} VALUES (?, ?, ?, ?, ?, true)",
                [pipeline.name, step.name, name, list(step.key), list(step.outputs)],
            )
        con.execute(
            f"UPDATE {PIPELINE_STEPS} SET active = false "
            "WHERE pipeline = ? AND NOT list_contains(?, step)",
            [pipeline.name, [step.name for step in pipeline.steps]],
        )

    def _ensure_table(
        self, con: duckdb.DuckDBPyConnection, table: str, wanted: Mapping[str, str]
    ) -> None:
        """Create the table, or add the columns it lacks; a column's type must not change."""
        existing = _existing_columns(con, table)
        if existing is None:
            definitions = ", ".join(f"{quote(name)} {kind}" for name, kind in wanted.items())
            con.execute(f"CREATE TABLE {quote(table)} ({definitions})")
            return
        for name, kind in wanted.items():
            stored = existing.get(name.lower())
            if stored is None:
                con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {kind}")
            elif (stored, kind) == ("VARCHAR", "BLOB"):
                # Files written before dead letters kept raw bytes: text becomes its UTF-8.
                con.execute(
                    f"ALTER TABLE {quote(table)} ALTER {quote(name)} SET DATA TYPE BLOB "
                    f"USING encode({quote(name)})"
                )
            elif stored != kind:
                msg = (
                    f"column {name!r} of table {table} in {self.path} is {stored}, but pipeline "
                    f"{self._pipeline!r} writes {kind}; rename the column or use another file"
                )
                raise SinkError(msg)

    def _ensure_results_table(
        self, con: duckdb.DuckDBPyConnection, table: _ResultsTable, results: pl.DataFrame
    ) -> None:
        """Create the results table on its first rows; add output columns a new version adds."""
        if table.columns is not None and {c.lower() for c in results.columns} <= table.columns:
            return
        types = _column_types(con, results)
        existing = _existing_columns(con, table.name)
        if existing is None:
            definitions = {**types, UPDATED_AT: "TIMESTAMPTZ"}
            columns = ", ".join(f"{quote(name)} {kind}" for name, kind in definitions.items())
            con.execute(f"CREATE TABLE {quote(table.name)} ({columns})")
            table.columns = {name.lower() for name in definitions}
            table.latest_start = None
            return
        rows = con.execute(f"SELECT max({START}) FROM {quote(table.name)}").fetchall()
        table.latest_start = rows[0][0]
        for name, kind in types.items():
            if name.lower() not in existing:
                con.execute(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(name)} {kind}")
        table.columns = set(existing) | {name.lower() for name in types}

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


def _expose(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    """Let SQL read ``frame`` as ``_VIEW`` without copying it (string views stay views).

    The next call replaces it; unregistering each time would cost as much as registering.
    """
    con.register(_VIEW, frame.to_arrow(compat_level=pl.CompatLevel.newest()))


def _column_types(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> dict[str, str]:
    """The DuckDB type of each column of a frame, as DuckDB itself maps Arrow types."""
    _expose(con, frame.head(0))
    rows = con.execute(f"DESCRIBE SELECT * FROM {_VIEW}").fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def _table_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _existing_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
    """Lowercased column name -> type of a table, or None when there is no such table."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND table_name = ?",
        [table],
    ).fetchall()
    return {str(name).lower(): str(kind) for name, kind in rows} or None


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
