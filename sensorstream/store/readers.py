"""Stores kept from one request to the next, over cursors of one DuckDB connection.

A running pipeline's API reads through the DuckDB sink's own connection
(:meth:`~sensorstream.sinks.duckdb.DuckDBSink.reader`). A :class:`~sensorstream.store.Store`
made per request makes its ``readings`` view each time: it lists the segments, and DuckDB
reads every segment's footer to bind the view. :class:`StoreReaders` keeps the stores
instead, each used by one request at a time, and refreshes one when it is taken: its
view is made again only when the segments changed (a flush, a merge, the retention).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from sensorstream.errors import StoreError
from sensorstream.store.query import Store

Cursor = Callable[[], duckdb.DuckDBPyConnection]


class StoreReaders:
    """Stores over cursors that ``cursor`` makes, reused; at most ``keep`` wait unused.

    >>> import duckdb
    >>> connection = duckdb.connect()
    >>> readers = StoreReaders(Path("nowhere.duckdb"), connection.cursor)
    >>> with readers.open() as store:
    ...     store.sql("SELECT count(*) AS n FROM readings")["n"].item()
    0
    >>> readers.close()
    """

    def __init__(self, path: Path, cursor: Cursor, *, keep: int = 8) -> None:
        self.path = path
        self._cursor = cursor
        self._keep = keep
        self._idle: list[Store] = []
        self._lock = threading.Lock()

    @contextmanager
    def open(self) -> Iterator[Store]:
        """A store showing the segments as they are now, for this caller alone meanwhile."""
        with self._lock:
            store = self._idle.pop() if self._idle else None
        if store is None:
            store = Store(self.path, self._cursor())
        else:
            try:
                store.refresh()
            except BaseException:
                store.close()
                raise
        try:
            yield store
        except StoreError:  # a query refused or failed: the store itself is as good as before
            self._put_back(store)
            raise
        except BaseException:
            store.close()  # anything else: the next caller starts afresh
            raise
        self._put_back(store)

    def _put_back(self, store: Store) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(store)
                return
        store.close()

    def close(self) -> None:
        """Close the stores waiting unused (those in use close when their caller is done)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for store in idle:
            store.close()
