"""Which SQL a store runs: queries, never a statement that writes or loads files.

A :class:`~sensorstream.store.Store`'s connection may read the store's segment folder,
and DuckDB lets a connection write where it may read (``COPY ... TO``, ``EXPORT``,
``ATTACH``). :func:`check_reads_only` refuses such statements before they run, by the
type DuckDB's parser gives them; what a read-only database refuses by itself (``INSERT``,
``DELETE``, ...) goes on to say so in DuckDB's words.
"""

from __future__ import annotations

import re

import duckdb

from sensorstream.errors import StoreError

# Statements Store.sql runs: queries, and those a read-only database refuses by itself.
_RUNS = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.INSERT,
    duckdb.StatementType.UPDATE,
    duckdb.StatementType.DELETE,
    duckdb.StatementType.MERGE_INTO,
    duckdb.StatementType.CREATE,
    duckdb.StatementType.DROP,
    duckdb.StatementType.ALTER,
}
_EXPLAIN = re.compile(r"^\s*explain(\s+analy[sz]e)?\s", re.IGNORECASE)


def check_reads_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse a query holding a statement that could write, load or reconfigure.

    >>> import duckdb
    >>> check_reads_only(duckdb.connect(), "SELECT 1; EXPLAIN SELECT 2")
    >>> from sensorstream.errors import StoreError
    >>> try:
    ...     check_reads_only(duckdb.connect(), "COPY (SELECT 1) TO 'x.csv'")
    ... except StoreError as error:
    ...     print(str(error).split(":")[0])
    a store runs queries only, not COPY statements
    """
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as error:
        msg = f"query failed: {error}"
        raise StoreError(msg) from error
    for statement in statements:
        if statement.type == duckdb.StatementType.EXPLAIN:
            explained = _EXPLAIN.sub("", statement.query, count=1)
            if explained != statement.query:
                check_reads_only(con, explained)
                continue
        if statement.type not in _RUNS:
            kind = statement.type.name
            msg = (
                f"a store runs queries only, not {kind} statements: they could write or load "
                "files beside it (query with SELECT)"
            )
            raise StoreError(msg)
