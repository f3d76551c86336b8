"""Raw readings read back from a store's Parquet segments, with or without its DuckDB file.

The DuckDB sink writes raw readings as immutable segments beside the file
(:mod:`sensorstream.sinks.segments`). Two ways read them:

- :func:`scan_readings`: a lazy Polars frame over the segment files alone. It works while a
  pipeline writes the store, which DuckDB's single-writer lock forbids for the file itself:
  segments are complete once they are listed, and the one being written is not listed yet.
- :func:`register_readings`: the view ``readings`` in a DuckDB connection to the store (what
  :class:`~sensorstream.store.Store` and ``sensorstream query`` read), over the segments and,
  for a file no sink opened since readings moved to segments, its ``readings`` table.

Both read the segments :func:`~sensorstream.sinks.segments.list_segments` lists: the
inputs of a merge are left out once the merged segment is in place. Segments are listed
once, when the frame or the view is made: a segment a pipeline removes afterwards
(restoring after a crash, or by retention) makes the read fail; read again. Merged inputs
stay a grace period (a minute) after the merged segment is in place, so a read that
listed them meanwhile ends normally.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import polars as pl

from sensorstream.errors import StoreError
from sensorstream.sinks.duckdb_tables import READINGS, literal, quote
from sensorstream.sinks.segments import pipeline_of, readings_root, segment_files, segments_root

ORIGIN_SCHEMA = {"pipeline": pl.String(), "partition": pl.Int32(), "position": pl.Int64()}
_ORIGIN_SQL = {"pipeline": "VARCHAR", "partition": "INTEGER", "position": "BIGINT"}


def scan_readings(store: Path | str, pipeline: str | None = None) -> pl.LazyFrame:
    """The raw readings a store holds in segments, as a lazy frame; readable while written.

    ``pipeline`` reads one pipeline's (its folder alone); None reads every pipeline's, with
    the columns of all (a column a pipeline lacks is null in its rows). The columns are
    those of the ``readings`` view: ``pipeline``, ``partition``, ``position``, then the
    readings' own.

    >>> scan_readings("nowhere.duckdb").collect_schema().names()
    ['pipeline', 'partition', 'position']
    """
    files = segment_files(Path(store), pipeline)
    if not files:
        return pl.LazyFrame(schema=ORIGIN_SCHEMA)
    scans = [
        pl.scan_parquet(path, hive_partitioning=False).select(
            pl.lit(pipeline_of(path.parent), pl.String).alias("pipeline"), pl.all()
        )
        for path in files
    ]
    return pl.concat(scans, how="diagonal_relaxed")


def register_readings(
    con: duckdb.DuckDBPyConnection,
    store: Path,
    *,
    legacy_table: bool,
    reading_columns: Iterable[str] = (),
    files: Sequence[Path] | None = None,
) -> tuple[Path, ...]:
    """Create the temporary view ``readings`` over the store's segments in ``con``.

    ``legacy_table`` says the file still has its ``readings`` table (written before
    segments, and opened by no sink since): the view then shows its rows too.
    ``reading_columns`` are the columns the view has when no segment exists yet. ``files``
    are the segments to show (:func:`~sensorstream.sinks.segments.segment_files`, listed
    now when None); returns them.

    The view names the segments it reads, so it stays what it was when made: make it
    again to see newer ones. DuckDB's own Parquet reader reads them (a connection reading
    no other file may read the folder: :func:`allow_segments`), skipping files and row
    groups outside a query's time range by their ``ts`` statistics.
    """
    listed = tuple(segment_files(store) if files is None else files)
    folders: dict[Path, list[Path]] = {}
    for path in listed:
        folders.setdefault(path.parent, []).append(path)
    selects = []
    for folder, paths in folders.items():
        names = ", ".join(literal(path.resolve()) for path in paths)
        # The pipeline from the folder's name, not hive-style from the path: a folder
        # above the store named like key=value would become a column too.
        pipeline = literal(pipeline_of(folder))
        selects.append(
            f"SELECT {pipeline} AS pipeline, * FROM read_parquet([{names}], "
            "union_by_name = true, hive_partitioning = false)"
        )
    if not selects:
        origin = ", ".join(f"NULL::{kind} AS {name}" for name, kind in _ORIGIN_SQL.items())
        empty = "".join(f", NULL AS {quote(c)}" for c in reading_columns if c not in _ORIGIN_SQL)
        selects.append(f"SELECT {origin}{empty} WHERE false")
    if legacy_table:
        database = con.execute("SELECT current_database()").fetchall()[0][0]
        # Qualified by database: plain main.readings would be the view itself, in temp.main.
        selects.append(f"SELECT * FROM {quote(str(database))}.main.{READINGS}")
    query = " UNION ALL BY NAME ".join(selects)
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {READINGS} AS {query}")
    except duckdb.Error as error:
        msg = (
            f"cannot read the reading segments in {segments_root(store)}: {error}; "
            "a running pipeline may have just removed one, so try again"
        )
        raise StoreError(msg) from error
    return listed


def allow_segments(con: duckdb.DuckDBPyConnection, store: Path) -> None:
    """Let a connection that reads no file but its database's read the store's segments.

    Turns external access off for good (no file, extension or network beyond the folder).
    A connection DuckDB shares (the same file opened again in this process) has it so.
    """
    folder = str(readings_root(store).resolve()) + os.sep
    external = con.execute("SELECT current_setting('enable_external_access')").fetchall()[0][0]
    if external:
        con.execute("SET allowed_directories = ?", [[folder]])
        con.execute("SET enable_external_access = false")
    # Immutable files: their footers need reading once, not once a query.
    con.execute("SET parquet_metadata_cache = true")
