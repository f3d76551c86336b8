"""Which SQL a store runs: one query, never a statement that writes, loads or reconfigures.

A :class:`~sensorstream.store.Store`'s connection may read the store's segment folder, and
DuckDB lets a connection write where it may read (``COPY ... TO``, ``EXPORT``,
``ATTACH``); inside a running pipeline the store is read through the writer's own
connection, where DuckDB itself would refuse not even an ``INSERT``. So
:func:`check_reads_only` lets through exactly one statement that DuckDB's parser calls a
``SELECT`` (``SHOW``, ``DESCRIBE``, ``SUMMARIZE``, ``FROM t`` and ``WITH`` are SELECTs too),
or an ``EXPLAIN`` (``ANALYZE``) of one, and refuses anything else before it runs.
"""

from __future__ import annotations

import re

import duckdb

from sensorstream.errors import StoreError

_EXPLAIN = re.compile(r"^\s*explain(\s+analy[sz]e)?\s", re.IGNORECASE)


def check_reads_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """A StoreError unless ``query`` is one SELECT, or an EXPLAIN of one.

    >>> import duckdb
    >>> check_reads_only(duckdb.connect(), "EXPLAIN ANALYZE SELECT 2")
    >>> from sensorstream.errors import StoreError
    >>> try:
    ...     check_reads_only(duckdb.connect(), "COPY (SELECT 1) TO 'x.csv'")
    ... except StoreError as error:
    ...     print(str(error).split(":")[0])
    the store is read-only
    """
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as error:
        msg = f"the query is not SQL DuckDB can parse: {error}"
        raise StoreError(msg) from error
    if len(statements) != 1:
        msg = f"run one statement at a time (this holds {len(statements)})"
        raise StoreError(msg)
    statement = statements[0]
    if statement.type == duckdb.StatementType.EXPLAIN:
        explained = _EXPLAIN.sub("", statement.query, count=1)
        if explained != statement.query:
            check_reads_only(con, explained)
            return
    if statement.type != duckdb.StatementType.SELECT:
        kind = statement.type.name.replace("_", " ")
        msg = (
            f"the store is read-only: run a SELECT (or EXPLAIN), not a {kind} statement "
            "(it could write, load or change what is beside the store)"
        )
        raise StoreError(msg)
