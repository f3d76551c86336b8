"""The file beside a DuckDB store that keeps its alerts' acknowledgements and silences.

``out.duckdb`` -> ``out.duckdb.alerts.sqlite`` (:func:`actions_path`): SQLite in WAL mode,
so any number of processes read while one writes, writers take turns after a short lock
wait, and each commit is durable (``synchronous=FULL``). Why SQLite and not the DuckDB
store itself: see :mod:`sensorstream.actions.alert_actions`. Times are stored as microseconds
since 1970 (UTC) and come back as aware datetimes.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sensorstream.errors import StoreError

LOCK_WAIT_S = 10.0  # how long a writer waits for another one before giving up
FORMAT = 1  # PRAGMA user_version of the file
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCHEMA = """
CREATE TABLE IF NOT EXISTS acknowledgements (
    id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, pipeline TEXT, by TEXT NOT NULL,
    note TEXT NOT NULL, at_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS acknowledgements_by_alert ON acknowledgements (alert_id);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY, pipeline TEXT, rule TEXT, key TEXT, until_us INTEGER NOT NULL,
    by TEXT NOT NULL, note TEXT NOT NULL, created_us INTEGER NOT NULL, removed_us INTEGER,
    removed_by TEXT);
CREATE TABLE IF NOT EXISTS webhook_outboxes (
    pipeline TEXT NOT NULL, outbox TEXT NOT NULL, endpoint TEXT NOT NULL,
    registered_us INTEGER NOT NULL, PRIMARY KEY (pipeline, outbox));
"""


def to_us(moment: datetime) -> int:
    """An aware datetime as microseconds since 1970 (UTC)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(micros: int) -> datetime:
    """Microseconds since 1970 as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=micros)


def actions_path(store: Path | str) -> Path:
    """Where the acknowledgements and silences of a DuckDB store's alerts live.

    >>> actions_path("data/out.duckdb").as_posix()
    'data/out.duckdb.alerts.sqlite'
    """
    store = Path(store)
    return store.with_name(store.name + ".alerts.sqlite")


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """A connection to an actions file in WAL mode; ``create`` makes the file and its tables.

    Autocommit (transactions are explicit), durable commits, and a writer waits up to
    :data:`LOCK_WAIT_S` for another one.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None)
    try:
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, FORMAT):
            msg = (
                f"{path} was written by another version of sensorstream (format {version}, "
                f"this one reads {FORMAT})"
            )
            raise StoreError(msg)
        if create and version == 0:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version={FORMAT}; COMMIT;")
        con.execute("PRAGMA synchronous=FULL")
    except BaseException:
        con.close()
        raise
    return con


def failed(doing: str, path: Path, error: sqlite3.Error) -> str:
    """The message of a failed read or write; a lock held too long says to try again."""
    if "locked" in str(error).lower():
        return (
            f"{doing} in {path} failed: another process kept the file locked for "
            f"{LOCK_WAIT_S:.0f} s; try again"
        )
    return f"{doing} in {path} failed: {error}"
