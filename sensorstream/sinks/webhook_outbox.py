"""The webhook sink's outbox: transitions waiting to be sent, and what became of each one.

One SQLite file (WAL mode) per webhook sink, by default beside the pipeline's checkpoint
folder (:func:`default_outbox`), so ``--fresh``, which deletes that folder, keeps it::

    deliveries   seq (queue order), pipeline, transition_id, alert_id, rule, key, state,
                 partition, position, payload (the JSON body), status, attempts,
                 last_error, last_status (HTTP), queued_us, next_attempt_us,
                 delivered_us, silence_id: one row per pipeline and transition id

``status`` is ``queued`` (to send, maybe after a retry's wait), ``delivered``, ``failed``
(permanently, or out of retries) or ``silenced`` (muted, not sent). Times are
microseconds since 1970, UTC.

The pipeline's thread adds rows (:meth:`Outbox.enqueue`) and commits them at once, so the
delivery thread can send them straight away; a committed row survives ``kill -9`` (it is
in the operating system's hands), and :meth:`Outbox.flush`, called before each checkpoint,
syncs the log to disk: a transition in a checkpoint survives a power cut too. The delivery
thread reads due rows and records each attempt on a connection of its own, and never holds
a write lock while it waits for the network.

A transition replayed after a crash has the id it had, so queuing it again changes nothing
(``INSERT OR IGNORE``): it is never queued twice, and once delivered it is not sent again.
:meth:`Outbox.restore` drops the rows still queued for positions after a checkpoint, as the
DuckDB sink drops its rows: the replay queues them again (or, with a changed pipeline, the
transitions it gives instead). Delivered, failed and silenced rows stay: they are history.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sensorstream.errors import SinkError

Status = Literal["queued", "delivered", "failed", "silenced"]
LOCK_WAIT_S = 10.0
_FORMAT = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL, transition_id TEXT NOT NULL, alert_id TEXT NOT NULL,
    rule TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,
    partition INTEGER NOT NULL, position INTEGER NOT NULL, payload BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, last_status INTEGER, queued_us INTEGER NOT NULL,
    next_attempt_us INTEGER NOT NULL, delivered_us INTEGER, silence_id INTEGER,
    UNIQUE (pipeline, transition_id));
CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries (pipeline, status, alert_id, seq);
CREATE TABLE IF NOT EXISTS outbox_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COLUMNS = (
    "seq, pipeline, transition_id, alert_id, rule, key, state, payload, status, attempts, "
    "last_error, last_status, queued_us, next_attempt_us, delivered_us, silence_id"
)
# A queued row is held back while an earlier transition of its alert is still queued: an
# alert's transitions arrive in their order, and one waiting for a retry holds up no other.
_HEAD_OF_ITS_ALERT = (
    "NOT EXISTS (SELECT 1 FROM deliveries AS earlier WHERE earlier.pipeline = d.pipeline "
    "AND earlier.status = 'queued' AND earlier.alert_id = d.alert_id AND earlier.seq < d.seq)"
)


def default_outbox(checkpoint_dir: Path, url: str) -> Path:
    """The outbox beside a checkpoint folder; another URL gets another outbox.

    >>> default_outbox(Path(".sensorstream/weather"), "http://127.0.0.1:9000/hook").name
    'weather.webhook-e26ff300.sqlite'
    """
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return checkpoint_dir.parent / f"{checkpoint_dir.name}.webhook-{digest}.sqlite"


@dataclass(frozen=True)
class Queued:
    """A transition to send: what identifies it, where it came from, and its JSON body."""

    transition_id: str
    alert_id: str
    rule: str
    key: str
    state: str
    partition: int
    position: int
    payload: bytes


@dataclass(frozen=True)
class Delivery:
    """One row of the outbox: a transition and what became of it so far."""

    seq: int
    pipeline: str
    transition_id: str
    alert_id: str
    rule: str
    key: str
    state: str
    payload: bytes
    status: Status
    attempts: int
    last_error: str | None
    last_status: int | None
    queued_us: int
    next_attempt_us: int
    delivered_us: int | None
    silence_id: int | None


class Outbox:
    """One connection to an outbox, for one pipeline's rows; use one per thread."""

    def __init__(self, path: Path, pipeline: str) -> None:
        self.path = path
        self.pipeline = pipeline
        self._unsynced = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            msg = f"cannot open the webhook outbox {path}: {error}"
            raise SinkError(msg) from error
        try:
            with self._transaction("preparing the outbox") as con:
                version = int(con.execute("PRAGMA user_version").fetchone()[0])
                if version not in (0, _FORMAT):
                    msg = (
                        f"the webhook outbox {path} was written by another version of "
                        f"sensorstream (format {version}); move it away to start a new one"
                    )
                    raise SinkError(msg)
                if version == 0:
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        con.execute(statement)
                    con.execute(f"PRAGMA user_version = {_FORMAT}")
            # Commits survive a crash of this process; flush() syncs them to disk.
            self._connection.execute("PRAGMA journal_mode = WAL")
            self._connection.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            self._connection.close()
            raise

    def close(self) -> None:
        """Release the file."""
        self._connection.close()

    # -- the pipeline's side --------------------------------------------------------------
    def enqueue(self, rows: Sequence[Queued], now_us: int) -> int:
        """Queue transitions not queued before; returns how many were new."""
        if not rows:
            return 0
        with self._transaction("queuing transitions") as con:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO deliveries (pipeline, transition_id, alert_id, rule, key, "
                "state, partition, position, payload, queued_us, next_attempt_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        self.pipeline,
                        row.transition_id,
                        row.alert_id,
                        row.rule,
                        row.key,
                        row.state,
                        row.partition,
                        row.position,
                        row.payload,
                        now_us,
                        now_us,
                    )
                    for row in rows
                ],
            )
            added = con.total_changes - before
        self._unsynced = True
        return added

    def flush(self) -> None:
        """Sync every row committed so far to disk (one fsync of the log, if anything changed)."""
        if not self._unsynced:
            return
        con = self._connection
        try:
            # In WAL mode a commit under synchronous=FULL syncs the log, with every frame in it.
            con.execute("PRAGMA synchronous = FULL")
            with self._transaction("syncing the outbox"):
                con.execute(
                    "INSERT INTO outbox_meta VALUES ('flushes', 1) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + 1"
                )
        finally:
            con.execute("PRAGMA synchronous = NORMAL")
        self._unsynced = False

    def restore(self, positions: Mapping[int, int]) -> int:
        """Drop queued rows of these partitions after their positions (others keep theirs)."""
        with self._transaction("forgetting queued transitions after the checkpoint") as con:
            queued = con.execute(
                "SELECT seq, partition, position FROM deliveries "
                "WHERE pipeline = ? AND status = 'queued'",
                [self.pipeline],
            ).fetchall()
            later = [
                (seq,)
                for seq, partition, position in queued
                if partition in positions and position > positions[partition]
            ]
            con.executemany("DELETE FROM deliveries WHERE seq = ?", later)
        self._unsynced = True
        return len(later)

    # -- the delivery thread's side -------------------------------------------------------
    def due(self, now_us: int, limit: int) -> list[Delivery]:
        """Queued rows due by ``now_us``, first queued first, at most one per alert."""
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM deliveries AS d WHERE pipeline = ? AND status = 'queued' "
            f"AND next_attempt_us <= ? AND {_HEAD_OF_ITS_ALERT} ORDER BY seq LIMIT ?",
            [self.pipeline, now_us, limit],
        )
        return [_delivery(row) for row in rows]

    def next_due_us(self) -> int | None:
        """When the next queued row falls due (None: nothing queued)."""
        rows = self._rows(
            "SELECT min(next_attempt_us) FROM deliveries AS d WHERE pipeline = ? "
            f"AND status = 'queued' AND {_HEAD_OF_ITS_ALERT}",
            [self.pipeline],
        )
        return None if rows[0][0] is None else int(rows[0][0])

    def waiting(self) -> int:
        """How many rows are still queued."""
        rows = self._rows(
            "SELECT count(*) FROM deliveries WHERE pipeline = ? AND status = 'queued'",
            [self.pipeline],
        )
        return int(rows[0][0])

    def delivered(self, seq: int, attempts: int, status: int, now_us: int) -> None:
        """Record a delivery the endpoint accepted."""
        self._update(
            seq,
            status="delivered",
            attempts=attempts,
            last_status=status,
            last_error=None,
            delivered_us=now_us,
        )

    def retry(self, seq: int, attempts: int, error: str, status: int | None, at_us: int) -> None:
        """Record a failed attempt to be tried again at ``at_us``."""
        self._update(
            seq, attempts=attempts, last_error=error, last_status=status, next_attempt_us=at_us
        )

    def failed(self, seq: int, attempts: int, error: str, status: int | None) -> None:
        """Record a failure not to be retried."""
        self._update(seq, status="failed", attempts=attempts, last_error=error, last_status=status)

    def silenced(self, seq: int, silence_id: int) -> None:
        """Record a delivery muted by a silence: not sent."""
        self._update(seq, status="silenced", silence_id=silence_id)

    # -- plumbing -------------------------------------------------------------------------
    def _update(self, seq: int, **values: object) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)  # names are ours, not data
        with self._transaction("recording a delivery") as con:
            con.execute(
                f"UPDATE deliveries SET {assignments} WHERE seq = ?", [*values.values(), seq]
            )

    def _rows(self, query: str, parameters: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            return self._connection.execute(query, parameters).fetchall()
        except sqlite3.Error as error:
            msg = f"reading the webhook outbox {self.path} failed: {error}"
            raise SinkError(msg) from error

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        con = self._connection
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException as error:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                msg = f"{doing} in the webhook outbox {self.path} failed: {error}"
                raise SinkError(msg) from error
            raise


def read_deliveries(
    path: Path, *, pipeline: str | None = None, alert_id: str | None = None
) -> list[Delivery]:
    """The rows of an outbox, read-only (a running sink may be writing it), in queue order."""
    if not path.exists():
        return []
    conditions, parameters = ["true"], []
    for column, value in (("pipeline", pipeline), ("alert_id", alert_id)):
        if value is not None:
            conditions.append(f"{column} = ?")
            parameters.append(value)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=LOCK_WAIT_S)
        try:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM deliveries AS d WHERE {' AND '.join(conditions)} "
                "ORDER BY seq",
                parameters,
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error as error:
        msg = f"reading the webhook outbox {path} failed: {error}"
        raise SinkError(msg) from error
    return [_delivery(row) for row in rows]


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(
        seq=int(row[0]),
        pipeline=str(row[1]),
        transition_id=str(row[2]),
        alert_id=str(row[3]),
        rule=str(row[4]),
        key=str(row[5]),
        state=str(row[6]),
        payload=bytes(row[7]),
        status=row[8],
        attempts=int(row[9]),
        last_error=row[10],
        last_status=None if row[11] is None else int(row[11]),
        queued_us=int(row[12]),
        next_attempt_us=int(row[13]),
        delivered_us=None if row[14] is None else int(row[14]),
        silence_id=None if row[15] is None else int(row[15]),
    )
