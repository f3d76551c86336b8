"""The tables of a DuckDB store: their names, and creating or extending them as pipelines change.

The sink (:mod:`~sensorstream.sinks.duckdb`) writes through these; the store
(:mod:`~sensorstream.store`) reads the same names back. A table a newer pipeline needs more
columns of gets them added; a column whose type changed is an error naming the file, except
a dead letter's ``raw`` text of an older store, which becomes its UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from sensorstream.engine.outputs import START
from sensorstream.errors import SinkError
from sensorstream.sinks.base import PipelineInfo

PIPELINES = "pipelines"
PIPELINE_STEPS = "pipeline_steps"
READINGS = "readings"
DEAD_LETTERS = "dead_letters"
LATE_READINGS = "late_readings"
COUNTERS = "counters"
ALERT_TRANSITIONS = "alert_transitions"
EMITTED_AT = "emitted_at"
LATE_FOR = "late_for"
UPDATED_AT = "updated_at"
# Where each stored row came from: what restore() truncates by.
ORIGIN_COLUMNS = {"pipeline": "VARCHAR", "partition": "INTEGER", "position": "BIGINT"}
COUNTER_COLUMNS = {"pipeline": "VARCHAR", "partition": "INTEGER", "counter": "VARCHAR"} | {
    "value": "BIGINT"
}
VIEW = "__sensorstream_frame"  # the name an Arrow frame is scanned under while written


def quote(identifier: str) -> str:
    """An SQL identifier in double quotes, safe for any name (spaces, quotes, keywords)."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: object) -> str:
    """A string literal for SQL that takes no parameters (COPY's target, a view's files).

    >>> literal("it's")
    "'it''s'"
    """
    return "'" + str(value).replace("'", "''") + "'"


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


@dataclass
class ResultsTable:
    """A step's results table: its name, key, known columns and latest window stored."""

    name: str
    key: tuple[str, ...]
    columns: set[str] | None = None  # lowercased, once the table is known to exist
    # The latest window_start stored, None if none: results of later windows replace
    # nothing, so the usual case (windows closing in time order) needs no DELETE at all.
    latest_start: datetime | None = None


def record_pipeline(
    con: duckdb.DuckDBPyConnection, pipeline: PipelineInfo, *, stores_readings: bool, path: Path
) -> dict[str, ResultsTable]:
    """Record the pipeline and give each step its results table (step name -> table)."""
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
        [pipeline.name, list(pipeline.reading_schema), stores_readings],
    )
    rows = con.execute(
        f"SELECT step, results_table, key_columns FROM {PIPELINE_STEPS} WHERE pipeline = ?",
        [pipeline.name],
    ).fetchall()
    known = {str(step): (str(table), tuple(key)) for step, table, key in rows}
    claimed = con.execute(f"SELECT results_table FROM {PIPELINE_STEPS}").fetchall()
    taken = {name.lower() for name in table_names(con)}
    taken |= {str(row[0]).lower() for row in claimed}
    tables: dict[str, ResultsTable] = {}
    for step in pipeline.steps:
        if step.kind != "results":
            continue  # a rule's alerts go to the one alert_transitions table
        if step.name in known:
            name, key = known[step.name]
            if key != step.key:
                msg = (
                    f"step {step.name!r} of pipeline {pipeline.name!r} keyed its results by "
                    f"{list(key)} in {path}, and now by {list(step.key)}; drop table "
                    f"{name} there, rename the step, or use another file"
                )
                raise SinkError(msg)
        else:
            name = results_table_name(pipeline.name, step.name)
            if name.lower() in taken:
                digest = hashlib.sha1(f"{pipeline.name}\0{step.name}".encode()).hexdigest()
                name = f"{name}_{digest[:8]}"
            taken.add(name.lower())
        tables[step.name] = ResultsTable(name, step.key)
        con.execute(
            f"INSERT OR REPLACE INTO {PIPELINE_STEPS} VALUES (?, ?, ?, ?, ?, true)",
            [pipeline.name, step.name, name, list(step.key), list(step.outputs)],
        )
    con.execute(
        f"UPDATE {PIPELINE_STEPS} SET active = false "
        "WHERE pipeline = ? AND NOT list_contains(?, step)",
        [pipeline.name, [step.name for step in pipeline.steps if step.kind == "results"]],
    )
    return tables


def ensure_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    wanted: Mapping[str, str],
    *,
    path: Path,
    pipeline: str,
) -> None:
    """Create the table, or add the columns it lacks; a column's type must not change."""
    existing = existing_columns(con, table)
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
                f"column {name!r} of table {table} in {path} is {stored}, but pipeline "
                f"{pipeline!r} writes {kind}; rename the column or use another file"
            )
            raise SinkError(msg)


def ensure_results_table(
    con: duckdb.DuckDBPyConnection, table: ResultsTable, results: pl.DataFrame
) -> None:
    """Create the results table on its first rows; add output columns a new version adds."""
    if table.columns is not None and {c.lower() for c in results.columns} <= table.columns:
        return
    types = column_types(con, results)
    existing = existing_columns(con, table.name)
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


def expose(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    """Let SQL read ``frame`` as ``VIEW`` without copying it (string views stay views).

    The next call replaces it; unregistering each time would cost as much as registering.
    """
    con.register(VIEW, frame.to_arrow(compat_level=pl.CompatLevel.newest()))


def column_types(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> dict[str, str]:
    """The DuckDB type of each column of a frame, as DuckDB itself maps Arrow types."""
    expose(con, frame.head(0))
    rows = con.execute(f"DESCRIBE SELECT * FROM {VIEW}").fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def table_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables of the connection's own database."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    return [str(row[0]) for row in rows]


def existing_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
    """Lowercased column name -> type of a table, or None when there is no such table."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND table_name = ?",
        [table],
    ).fetchall()
    return {str(name).lower(): str(kind) for name, kind in rows} or None
