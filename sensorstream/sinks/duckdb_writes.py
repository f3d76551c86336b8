"""The DuckDB sink's writes, one function per kind of table, inside the caller's transaction.

Frames reach DuckDB through Arrow (:func:`~sensorstream.sinks.duckdb_tables.expose`), never
row by row. A results table has no PRIMARY KEY: a key column may be null (readings without
a tag form a group of their own) while DuckDB makes primary-key columns NOT NULL. The sink
keeps one row per key and window itself (delete, then insert), which also runs about twice
as fast as ``INSERT OR REPLACE`` on an indexed table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import duckdb
import polars as pl

from sensorstream.engine.outputs import OP, START
from sensorstream.errors import SinkError
from sensorstream.sinks.duckdb_tables import (
    ALERT_TRANSITIONS,
    COUNTERS,
    EMITTED_AT,
    UPDATED_AT,
    VIEW,
    ResultsTable,
    ensure_results_table,
    expose,
    quote,
)


def append(
    con: duckdb.DuckDBPyConnection, pipeline: str, table: str, frames: Sequence[pl.DataFrame]
) -> None:
    """Append frames to a table of pipeline rows, through Arrow."""
    if not frames:
        return
    expose(con, pl.concat(frames, how="diagonal_relaxed", rechunk=False))
    con.execute(
        f"INSERT INTO {quote(table)} BY NAME SELECT ? AS pipeline, * FROM {VIEW}",
        [pipeline],
    )


def upsert(
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
        msg = f"results for table {table.name} have {OP} values {unknown}; allowed: upsert, delete"
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


def store_alerts(
    con: duckdb.DuckDBPyConnection,
    pipeline: str,
    frames: Sequence[pl.DataFrame],
    emitted_at: datetime,
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
        [pipeline],
    )
    con.execute(
        f"INSERT INTO {ALERT_TRANSITIONS} BY NAME SELECT ? AS pipeline, *, "
        f"? AS {EMITTED_AT} FROM {VIEW}",
        [pipeline, emitted_at],
    )


def replace_counters(
    con: duckdb.DuckDBPyConnection, pipeline: str, counters: Mapping[int, Mapping[str, int]]
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
        [pipeline, list(counters)],
    )
    expose(con, frame)
    con.execute(
        f"INSERT INTO {COUNTERS} BY NAME SELECT ? AS pipeline, * FROM {VIEW}",
        [pipeline],
    )
