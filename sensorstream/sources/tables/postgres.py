"""Reference tables from a PostgreSQL query, re-run every interval or when notified.

The query is the pipeline author's, configuration rather than input, and runs as written;
the values sensorstream adds to it (the change column's watermark) are always parameters.
Refreshing (``refresh:``) combines:

- ``interval``: re-run the query every interval;
- ``listen: channel``: ``LISTEN`` on the channel, and re-run the query at each ``NOTIFY``
  (sent by a trigger, or by whatever changes the table). A notification sent while the
  listening connection was down is lost, so each (re)connection starts with one refresh;
- ``change_column: updated_at``: each refresh asks only for the rows whose change column is
  above the highest value seen, ``SELECT * FROM (<query>) AS t WHERE t.updated_at > %s``,
  and hands them over as upserts (``full=False``); the first load is whole. Without it each
  refresh re-runs the whole query and hands it over (``full=True``) only if its content
  changed.

An incremental refresh sees neither deleted rows nor a row whose change value is not above
the highest seen once it commits (one stamped by a long transaction that commits after a
shorter, later one), nor rows whose change column is NULL: a restart, or a refresh without
``change_column``, loads those. Every connection is autocommit, so no refresh holds a
transaction open. A dropped connection is opened again: the listening one after a pause that
doubles from 0.5 s to 30 s, the querying one at the next interval or notification.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta
from typing import Any, Literal

import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensorstream.durations import Duration
from sensorstream.errors import ConfigError, SourceError
from sensorstream.sources.base import Clock
from sensorstream.sources.tables.base import TableUpdate, utc_now
from sensorstream.sources.tables.columns import content_digest
from sensorstream.sources.tables.postgres_frames import fetch_frame, prepare
from sensorstream.sources.tables.refresh import RefreshingTableSource

CONNECT_TIMEOUT_S = 5
# How often the listening thread looks up from waiting for notifications to see if it
# should stop; and its pauses between attempts to reconnect, first and longest.
_NOTIFY_WAIT_S = 0.5
_FIRST_BACKOFF_S, _MAX_BACKOFF_S = 0.5, 30.0


class PostgresTableSource(RefreshingTableSource):
    """A reference table that is the result of a query, refreshed on a schedule or on notice.

    Args:
        name: The table's name, for messages and the connections' ``application_name``.
        dsn: Where to connect: ``postgresql://user@host:port/dbname`` or ``key=value`` pairs.
        query: A SELECT, run as written.
        interval: How often to re-run the query; None: only when notified (or never).
        change_column: Refresh incrementally: only rows whose value in this column is above
            the highest seen, as upserts.
        listen: The channel whose notifications trigger a refresh.
        clock: Gives the processing time of each load.
    """

    def __init__(
        self,
        name: str,
        dsn: str,
        query: str,
        *,
        interval: timedelta | None = None,
        change_column: str | None = None,
        listen: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if change_column is not None and interval is None and listen is None:
            msg = (
                f"table {name!r}: change_column {change_column!r} needs an interval or a "
                "listen channel to say when to look for changes"
            )
            raise ConfigError(msg)
        super().__init__(
            name, refreshes=interval is not None or listen is not None, interval=interval
        )
        self.dsn = dsn
        # Inside a subquery a final semicolon would be a syntax error.
        self.query = query.strip().rstrip(";").rstrip()
        self.change_column = change_column
        self.listen = listen
        self.clock = clock
        self.listening = False  # whether the LISTEN connection is up, for tests and metrics
        self._connection: psycopg.Connection[Any] | None = None  # used under the lock only
        self._watermark: Any = None  # the highest change-column value loaded
        self._digest: str | None = None  # of the whole result last loaded
        self._listener: threading.Thread | None = None

    @property
    def where(self) -> str:
        """Where the DSN points (host, port, database), without its user or password."""
        try:
            parts = conninfo_to_dict(self.dsn)
        except psycopg.Error:
            return "the configured DSN"
        host, port = parts.get("host") or "localhost", parts.get("port") or 5432
        return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"

    def load(self) -> TableUpdate:
        """The whole result now; the first load starts refreshing (and listening), if set."""
        try:
            update = super().load()
        finally:
            if not self.refreshes:
                self._disconnect()  # nothing will query again
        if self.listen is not None and self._listener is None:
            self._listener = threading.Thread(
                target=self._listen, args=(self.listen,), name=f"listen {self.name}", daemon=True
            )
            self._listener.start()
        return update

    def read_table(self) -> TableUpdate:
        """Run the whole query; remember its digest and watermark for the refreshes."""
        rows = self._fetch_all()
        if self.change_column is not None and self.change_column not in rows.columns:
            msg = (
                f"table {self.name!r}: change_column {self.change_column!r} is not a column "
                f"of the query's result; its columns are {', '.join(rows.columns)}"
            )
            raise SourceError(msg)
        return self._whole(rows, content_digest(rows))

    def read_changes(self) -> TableUpdate | None:
        """The rows changed since the last read as upserts, or the whole result if it changed.

        Without a watermark yet (no change column, or no row had a value in it), the whole
        query runs again and is an update only if its content differs.
        """
        if self.change_column is None or self._watermark is None:
            rows = self._fetch_all()
            digest = content_digest(rows)
            return None if digest == self._digest else self._whole(rows, digest)
        query = sql.SQL("SELECT * FROM ({}) AS t WHERE t.{} > %s").format(
            # With parameters, psycopg reads every % as a placeholder's: double the query's.
            sql.SQL(self.query.replace("%", "%%")),
            sql.Identifier(self.change_column),
        )
        rows = self._fetch(query, (self._watermark,))
        if rows.height == 0:
            return None
        self._watermark = rows[self.change_column].max()  # all are above the old one
        version = f"{self.change_column}={_text(self._watermark)}"
        return TableUpdate(rows, full=False, loaded_at=self.clock(), version=version)

    def close(self) -> None:
        """Stop refreshing and listening, and close the connections."""
        super().close()
        if self._listener is not None:
            self._listener.join(timeout=2 * _NOTIFY_WAIT_S + CONNECT_TIMEOUT_S)
        if self._thread is None:  # else the refresh thread closes its own connection
            self._disconnect()

    def finish_refreshing(self) -> None:
        """Close the querying connection, in the refresh thread that used it."""
        with self._lock:
            self._disconnect()

    def _whole(self, rows: pl.DataFrame, digest: str) -> TableUpdate:
        self._digest = digest
        if self.change_column is not None:
            self._watermark = rows[self.change_column].max()
        if self._watermark is not None:
            version = f"{self.change_column}={_text(self._watermark)}"
        else:
            version = f"rows={rows.height} digest={digest}"
        return TableUpdate(rows, full=True, loaded_at=self.clock(), version=version)

    def _fetch_all(self) -> pl.DataFrame:
        # The query is the pipeline author's configuration, not input: it runs as written.
        return self._fetch(sql.SQL(self.query))

    def _fetch(
        self, query: sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None
    ) -> pl.DataFrame:
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._connection = self._open()
        try:
            with connection.cursor(binary=True) as cursor:
                cursor.execute(query, params)
                return fetch_frame(cursor, self.name)
        except psycopg.Error as error:
            if connection.broken or isinstance(error, psycopg.OperationalError):
                self._disconnect()  # the next refresh opens a new connection
                msg = (
                    f"table {self.name!r}: lost the connection to PostgreSQL at {self.where}: "
                    f"{_detail(error)}"
                )
            else:
                message = error.diag.message_primary or _detail(error)
                msg = f"table {self.name!r}: the query failed: {message}; the query: {self.query}"
            raise SourceError(msg) from error

    def _open(self) -> psycopg.Connection[Any]:
        try:
            connection = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=f"sensorstream table {self.name}",
            )
        except psycopg.Error as error:
            msg = (
                f"table {self.name!r}: cannot connect to PostgreSQL at {self.where}: "
                f"{_detail(error)}"
            )
            raise SourceError(msg) from error
        prepare(connection)
        return connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _listen(self, channel: str) -> None:
        """Wake the refresh thread at each notification on ``channel``; reconnect if dropped."""
        pause = _FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                connection = self._open()
            except SourceError as error:
                self.report_error(f"cannot listen on {channel!r}: {error}")
            else:
                try:
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.listening = True
                    pause = _FIRST_BACKOFF_S
                    self.wake()  # catch up on what changed while nobody listened
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=_NOTIFY_WAIT_S):
                            self.wake()
                except psycopg.Error as error:
                    self.report_error(
                        f"table {self.name!r}: stopped listening on {channel!r}, "
                        f"reconnecting: {_detail(error)}"
                    )
                finally:
                    self.listening = False
                    connection.close()
            self._stop.wait(pause)
            pause = min(2 * pause, _MAX_BACKOFF_S)


def _detail(error: BaseException) -> str:
    """A psycopg error's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class PostgresRefreshSettings(BaseModel):
    """When to refresh a PostgreSQL table (``interval``, ``listen``) and how (``change_column``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: Duration | None = None
    change_column: str | None = None
    listen: str | None = None

    @model_validator(mode="after")
    def _says_when(self) -> PostgresRefreshSettings:
        if self.interval is None and self.listen is None:
            msg = (
                "refresh needs an interval, a listen channel, or both, to say when to look "
                "(change_column says only what to ask for)"
            )
            raise ValueError(msg)
        if self.interval is not None and self.interval <= timedelta(0):
            msg = f"refresh.interval must be above 0, got {self.interval}"
            raise ValueError(msg)
        return self


class PostgresTableSettings(BaseModel):
    """A :class:`PostgresTableSource` as written under a table's ``source:`` in a pipeline YAML.

    The DSN is written out (``dsn``) or, to keep a password out of the YAML, named by the
    environment variable that holds it (``dsn_env``).

    >>> settings = PostgresTableSettings(
    ...     dsn="postgresql://reader@db:5432/plant", query="SELECT user_id, low FROM ranges"
    ... )
    >>> settings.build("ranges").where
    'db:5432/plant'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["postgres"] = "postgres"
    dsn: str | None = Field(default=None, repr=False)  # it may hold a password
    dsn_env: str | None = None
    query: str = Field(min_length=1)
    refresh: PostgresRefreshSettings | None = None

    @model_validator(mode="after")
    def _one_dsn(self) -> PostgresTableSettings:
        if (self.dsn is None) == (self.dsn_env is None):
            msg = "give either dsn (the DSN itself) or dsn_env (the variable that holds it)"
            raise ValueError(msg)
        return self

    def build(self, name: str) -> PostgresTableSource:
        """The table source these settings describe; it first connects in its ``load``."""
        refresh = self.refresh
        return PostgresTableSource(
            name,
            self.resolve_dsn(name),
            self.query,
            interval=refresh.interval if refresh else None,
            change_column=refresh.change_column if refresh else None,
            listen=refresh.listen if refresh else None,
        )

    def resolve_dsn(self, name: str) -> str:
        """The DSN, from ``dsn`` or the environment; raises ConfigError if the variable is unset."""
        if self.dsn is not None:
            return self.dsn
        variable = self.dsn_env or ""
        value = os.environ.get(variable, "")
        if not value:
            msg = (
                f"tables.{name}.source.dsn_env: the environment variable {variable} is not "
                "set; set it to a DSN such as postgresql://user@host:5432/dbname"
            )
            raise ConfigError(msg)
        return value
