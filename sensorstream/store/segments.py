"""Raw readings read back from a store's Parquet segments, with or without its DuckDB file.

The DuckDB sink writes raw readings as immutable segments beside the file
(:mod:`sensorstream.sinks.segments`). Two ways read them:

- :func:`scan_readings`: a lazy Polars frame over the segment files alone. It works while a
  pipeline writes the store, which DuckDB's single-writer lock forbids for the file itself:
  segments are complete once they are listed, and the one being written is not listed yet.
- :func:`register_readings`: the view ``readings`` in a DuckDB connection to the store (what
  :class:`~sensorstream.store.Store` and ``sensorstream query`` read), over the segments and,
  for a file no sink opened since readings moved to segments, its ``readings`` table.

Segments are listed once, when the frame or the view is made: a segment a pipeline removes
afterwards (restoring after a crash, or by retention) makes the read fail; read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from sensorstream.errors import StoreError
from sensorstream.sinks.duckdb_tables import READINGS, quote
from sensorstream.sinks.segments import pipeline_of, readings_root, segment_files, segments_root

# The registered Arrow dataset the view reads; a name no user table takes.
SEGMENTS = "__sensorstream_reading_segments"
ORIGIN_SCHEMA = {"pipeline": pl.String(), "partition": pl.Int32(), "position": pl.Int64()}
_ARROW_ORIGIN = pl.DataFrame(schema=ORIGIN_SCHEMA).to_arrow().schema


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
) -> None:
    """Create the temporary view ``readings`` over the store's segments in ``con``.

    ``legacy_table`` says the file still has its ``readings`` table (written before
    segments, and opened by no sink since): the view then shows its rows too.
    ``reading_columns`` are the columns the view has when no segment exists yet.
    """
    files = segment_files(store)
    try:
        schemas = [pq.read_schema(path) for path in files]
    except (OSError, pa.ArrowException) as error:
        msg = (
            f"cannot read the reading segments in {segments_root(store)}: {error}; "
            "a running pipeline may have just removed one, so try again"
        )
        raise StoreError(msg) from error
    if schemas:
        schema = pa.unify_schemas([_ARROW_ORIGIN, *schemas], promote_options="permissive")
    else:
        empty = [pa.field(c, pa.null()) for c in reading_columns if c not in ORIGIN_SCHEMA]
        schema = pa.schema([*_ARROW_ORIGIN, *empty])
    # The connection may read no file itself (sql() may come from an HTTP request): Arrow
    # reads the segments, and only these.
    segments = ds.dataset(
        [str(path) for path in files],
        schema=schema,
        format="parquet",
        # pipeline=<name> folders, percent-decoded; a filter on pipeline skips the others.
        partitioning=ds.partitioning(pa.schema([_ARROW_ORIGIN.field("pipeline")]), flavor="hive"),
        partition_base_dir=str(readings_root(store)),
    )
    con.register(SEGMENTS, segments)
    query = f"SELECT * FROM {SEGMENTS}"
    if legacy_table:
        database = con.execute("SELECT current_database()").fetchall()[0][0]
        # Qualified by database: plain main.readings would be the view itself, in temp.main.
        query += f" UNION ALL BY NAME SELECT * FROM {quote(str(database))}.main.{READINGS}"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {READINGS} AS {query}")
