"""A scenario's reference tables, made from its feed's settings: in a file or in PostgreSQL.

Some reference designs join their stream with a table (heartwatch: every user's historical
heart-rate range). The scenario's feed makes that table too, as a pure function of its
settings and seed (:class:`FeedTable`), so the table always fits the users the feed
simulates. Before a run, :func:`place_tables` puts it where the pipeline reads it:

- by default, in the file the table's ``source`` names (a path relative to the working
  directory, like the store's, so ``sensorstream demo heartwatch`` works from anywhere):
  written on the first run, and again whenever it no longer holds exactly those rows;
- or, given a PostgreSQL DSN (``sensorstream demo heartwatch --table postgresql://...``),
  in a table of that database named as the pipeline's table, loaded when its rows differ,
  with a trigger that notifies ``<table>_changed`` on every change; the pipeline then reads
  it with its PostgreSQL table source, refreshed on each notification (an ``UPDATE`` while
  the demo runs changes the ranges it judges by).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from sensorstream.errors import ConfigError
from sensorstream.sources.feed import FeedSourceSettings
from sensorstream.sources.feeds import FeedSettings
from sensorstream.sources.tables.files import SUFFIXES

__all__ = ["FeedTable", "load_postgres", "place_tables", "write_table_file"]

_POSTGRES_TYPES = {
    pl.String: "text",
    pl.Int64: "bigint",
    pl.Int32: "integer",
    pl.Float64: "double precision",
    pl.Boolean: "boolean",
}
REFRESH_INTERVAL = "1m"  # besides the notifications: a change made while not listening


@dataclass(frozen=True)
class FeedTable:
    """A reference table made by the feed of ``stream``: ``rows(feed settings, seed)``."""

    stream: str
    rows: Callable[[FeedSettings, int], pl.DataFrame]

    def make(self, feeds: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:
        """The rows, from the feed source mapping of the stream (as the YAML has it)."""
        if self.stream not in feeds:
            msg = f"the stream {self.stream!r} that makes a reference table reads no feed"
            raise ConfigError(msg)
        source = FeedSourceSettings.model_validate(feeds[self.stream])
        return self.rows(source.feed, source.seed)


def place_tables(
    tables: dict[str, Any], made: Mapping[str, pl.DataFrame], postgres: str | None
) -> dict[str, Any]:
    """The ``tables:`` section with each made table in place: its file written, or in PostgreSQL.

    ``tables`` is the pipeline's section as YAML data; a made table it does not declare is
    an error (a ``changes`` that removed it). With ``postgres``, each made table's
    ``source`` becomes a PostgreSQL query of the table loaded there.
    """
    placed = dict(tables)
    for name, rows in made.items():
        if name not in placed:
            msg = f"the scenario makes a table {name!r} that the pipeline's tables: lack"
            raise ConfigError(msg)
        table = dict(placed[name])
        if postgres is not None:
            columns = [*table.get("key", []), *table.get("columns", {})]
            load_postgres(postgres, name, rows, key=list(table.get("key", [])))
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(name)
            )
            table["source"] = {
                "type": "postgres",
                "dsn": postgres,
                "query": query.as_string(None),
                "refresh": {"listen": f"{name}_changed", "interval": REFRESH_INTERVAL},
            }
        elif table["source"].get("type") == "file":
            write_table_file(Path(table["source"]["path"]), rows)
        placed[name] = table
    return placed


def write_table_file(path: Path, rows: pl.DataFrame) -> bool:
    """Write ``rows`` to ``path`` (its format by its suffix) unless it holds them already.

    The file is written beside itself and renamed over, so a pipeline watching it reads
    the old rows or the new ones, never half of them. Returns whether it was written.
    """
    kind = SUFFIXES.get(path.suffix.lower())
    if kind not in {"parquet", "csv", "ndjson"}:
        msg = f"a scenario writes its tables as .parquet, .csv or .ndjson, not {path.name}"
        raise ConfigError(msg)
    if path.is_file():
        try:
            if _read(path, kind, rows.schema).equals(rows):
                return False
        except (pl.exceptions.PolarsError, OSError, ValueError):
            pass  # unreadable or of another shape: written anew
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if kind == "parquet":
        rows.write_parquet(temporary)
    elif kind == "csv":
        rows.write_csv(temporary)
    else:
        rows.write_ndjson(temporary)
    os.replace(temporary, path)
    return True


def _read(path: Path, kind: str | None, schema: pl.Schema) -> pl.DataFrame:
    if kind == "parquet":
        return pl.read_parquet(path)
    if kind == "csv":
        return pl.read_csv(path, schema=schema)
    return pl.read_ndjson(path, schema=schema)


def load_postgres(dsn: str, name: str, rows: pl.DataFrame, *, key: list[str]) -> bool:
    """Make table ``name`` of the database hold exactly ``rows``; returns whether it changed.

    The table is created if missing (with ``key`` as its primary key and a trigger that
    notifies ``<name>_changed``), refused if its columns differ, and otherwise emptied and
    filled in one transaction, only when its rows are not those already.
    """
    columns = {column: _postgres_type(name, column, kind) for column, kind in rows.schema.items()}
    table = sql.Identifier(name)
    try:
        with psycopg.connect(dsn, connect_timeout=5) as connection, connection.transaction():
            _create(connection, name, columns, key)
            if _holds(connection, table, columns, key, rows):
                return False
            connection.execute(sql.SQL("TRUNCATE {}").format(table))
            names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
            copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)")
            with connection.cursor().copy(copy.format(table, names)) as writer:
                buffer = io.BytesIO()
                rows.write_csv(buffer)
                writer.write(buffer.getvalue())
            return True
    except psycopg.Error as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        msg = f"cannot load table {name!r} into PostgreSQL: {detail}"
        raise ConfigError(msg) from error


def _create(
    connection: psycopg.Connection[Any], name: str, columns: Mapping[str, str], key: list[str]
) -> None:
    """The table if missing (refused if its columns differ), and its notifying trigger."""
    table, notify = sql.Identifier(name), sql.Identifier(f"{name}_notify")
    declared = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items()
    )
    primary = sql.SQL(", ").join(sql.Identifier(c) for c in key)
    connection.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
            table, declared, primary
        )
    )
    found = connection.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (name,),
    ).fetchall()
    if [c for (c,) in found] != list(columns):
        msg = (
            f"PostgreSQL table {name!r} has the columns {[c for (c,) in found]}, not "
            f"{list(columns)}: drop it or point --table at another database"
        )
        raise ConfigError(msg)
    connection.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_notify({}, ''); RETURN NULL; END $$"
        ).format(notify, sql.Literal(f"{name}_changed"))
    )
    connection.execute(
        sql.SQL(
            "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
            "FOR EACH STATEMENT EXECUTE FUNCTION {}()"
        ).format(notify, table, notify)
    )


def _holds(
    connection: psycopg.Connection[Any],
    table: sql.Identifier,
    columns: Mapping[str, str],
    key: list[str],
    rows: pl.DataFrame,
) -> bool:
    """Whether the table holds exactly ``rows`` (compared in key order, sorted here)."""
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), table
    )
    found = connection.execute(query).fetchall()
    if len(found) != rows.height:
        return False
    there = pl.DataFrame(found, schema=rows.schema, orient="row")
    return there.sort(key).equals(rows.sort(key))


def _postgres_type(table: str, column: str, kind: pl.DataType) -> str:
    for polars_type, postgres_type in _POSTGRES_TYPES.items():
        if kind == polars_type:
            return postgres_type
    msg = f"table {table!r}: column {column!r} of type {kind} has no PostgreSQL type here"
    raise ConfigError(msg)
