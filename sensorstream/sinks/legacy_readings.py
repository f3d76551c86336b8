"""Moving a store's ``readings`` table (the layout before segments) into reading segments.

A store written before readings moved to Parquet holds them in a DuckDB table. The first
sink to open it moves every pipeline's rows into segments, one per pipeline and partition
(sequence 0), then drops the table. The segments are durable before the table goes, and
their names follow from the rows alone, so a crash midway is harmless: the next open finds
the table still there and writes the same files again.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from sensorstream.durable import sync_file, sync_folder
from sensorstream.sinks.duckdb_tables import (
    PIPELINES,
    READINGS,
    existing_columns,
    literal,
    quote,
)
from sensorstream.sinks.segments import COMPRESSION, Segment, pipeline_folder

_ORIGIN = ("partition", "position")  # and pipeline, which the folder says


def migrate_readings_table(con: duckdb.DuckDBPyConnection, store: Path) -> bool:
    """Move the ``readings`` table's rows into segments and drop it; False if there is none.

    Runs inside the caller's transaction: the table is dropped when it commits.
    """
    if existing_columns(con, READINGS) is None:
        return False
    columns = [  # as spelled: existing_columns() lowercases them
        str(row[0])
        for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND table_name = ? ORDER BY column_index",
            [READINGS],
        ).fetchall()
    ]
    recorded = _recorded_columns(con)
    parts = con.execute(
        f"SELECT pipeline, partition, min(position), max(position) FROM {READINGS} "
        "WHERE pipeline IS NOT NULL GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    folders: set[Path] = set()
    for pipeline, partition, first, last in parts:
        wanted = recorded.get(str(pipeline))
        readings = [
            c
            for c in columns
            if c not in (*_ORIGIN, "pipeline") and (wanted is None or c.lower() in wanted)
        ]
        folder = pipeline_folder(store, str(pipeline))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Segment.name(int(partition), int(first), int(last), 0)
        temporary = path.with_name(f".{path.name}.tmp")
        selected = ", ".join(quote(c) for c in (*_ORIGIN, *readings))
        # COPY streams the rows to the file: a large table never sits in memory whole.
        con.execute(
            f"COPY (SELECT {selected} FROM {READINGS} WHERE pipeline = {literal(pipeline)} "
            f"AND partition = {int(partition)} ORDER BY position) TO {literal(temporary)} "
            f"(FORMAT parquet, COMPRESSION {COMPRESSION})"
        )
        sync_file(temporary)
        temporary.replace(path)
        folders.add(folder)
    for folder in folders:
        sync_folder(folder)
    con.execute(f"DROP TABLE {READINGS}")
    return True


def _recorded_columns(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Each pipeline's reading columns as the sink recorded them (lowercased)."""
    if existing_columns(con, PIPELINES) is None:
        return {}
    rows = con.execute(f"SELECT pipeline, reading_columns FROM {PIPELINES}").fetchall()
    return {str(name): {str(c).lower() for c in columns or ()} for name, columns in rows}
