"""Acknowledgements and silences of alerts: who has seen an alert, and which notifications to mute.

They live in a small SQLite file beside the DuckDB store (``out.duckdb`` ->
``out.duckdb.alerts.sqlite``, :func:`actions_path`), not in the store itself. DuckDB lets
one process open a file for writing and no other process open it at all meanwhile, so an
operator could acknowledge or silence nothing while the pipeline raising the alerts runs,
which is when it matters most. SQLite in WAL mode lets any number of processes read while
one writes, takes writers one at a time after a short lock wait, and makes each commit
durable (``synchronous=FULL``): the CLI (and the HTTP API of a later issue, through the
same :class:`AlertActions`) writes while the pipeline's sinks read. Considered and left:
a table in the DuckDB store (locked while a pipeline runs); asking the running pipeline to
write for us (the embedded runner has no such channel, and nothing would work while no
pipeline runs); a JSON-lines file of our own (its locking, torn writes and compaction would
be ours to get right, and SQLite already gets them right).

What is kept, beside the alerts' transitions in the store (joined by ``alert_id``)::

    acknowledgements  alert_id, pipeline, by, note, at: who saw it; never changes its state
    silences          pipeline, rule, key (JSON: values the alert's key must have), until,
                      by, note, created_at, removed_at, removed_by; a null pipeline, rule
                      or key matches any
    webhook_outboxes  pipeline, outbox, endpoint: where webhook sinks record deliveries,
                      so ``sensorstream alerts show`` finds them

A silence mutes **notifications** (a webhook sends nothing and records the delivery as
``silenced``; the console dims the line), never alerts: transitions are stored as always.
A notification is muted when a matching silence was in effect at any moment between the
transition's queuing and the attempt to send it: a silence set while a transition waits
for a retry mutes it, and a backlog sent after a silence ended stays muted. Sinks see a new
silence at once: :class:`SilenceWatcher` re-reads the file only after another connection
committed to it (SQLite's ``data_version``), one pragma per check. Times are stored as
microseconds since 1970 (UTC) and come back as aware datetimes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sensorstream.errors import StoreError

KeyValue = str | int | float | bool | None
Clock = Callable[[], datetime]
MAX_NAME, MAX_NOTE = 200, 2000  # characters of ``by`` and of a note
LOCK_WAIT_S = 10.0  # how long a writer waits for another one before giving up
_FORMAT = 1  # PRAGMA user_version of the file
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCHEMA = """
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
_SILENCE_COLUMNS = "id, pipeline, rule, key, until_us, by, note, created_us, removed_us, removed_by"


def _utc_now() -> datetime:
    return datetime.now(UTC)


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


def key_matches(key_text: str, wanted: Mapping[str, KeyValue] | None) -> bool:
    """Whether an alert's key (JSON text, as transitions carry it) has every value of ``wanted``.

    >>> key_matches('{"device_id": "a", "room": "r1"}', {"room": "r1"})
    True
    >>> key_matches('{"room": 1}', {"room": "1"}), key_matches('{"on": 1}', {"on": True})
    (False, False)
    """
    if not wanted:
        return True
    try:
        values = json.loads(key_text)
    except ValueError:
        return False
    if not isinstance(values, dict):
        return False
    return all(name in values and _same(values[name], value) for name, value in wanted.items())


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _same(stored: object, wanted: object) -> bool:
    # JSON's true is not 1, though Python's True == 1.
    return stored == wanted and isinstance(stored, bool) == isinstance(wanted, bool)


@dataclass(frozen=True)
class Acknowledgement:
    """Someone saw an alert: who, when, and what they noted."""

    id: int
    alert_id: str
    pipeline: str | None
    by: str
    note: str
    at: datetime


@dataclass(frozen=True)
class Silence:
    """Notifications of the alerts it matches are muted from ``created_at`` until it ends."""

    id: int
    pipeline: str | None  # None: any pipeline of the store
    rule: str | None  # None: any rule
    key: Mapping[str, KeyValue] | None  # values the alert's key must have; None: any key
    until: datetime
    by: str
    note: str
    created_at: datetime
    removed_at: datetime | None = None
    removed_by: str | None = None

    @property
    def ends_at(self) -> datetime:
        """When it stops muting: its ``until``, or when it was removed if that came first."""
        if self.removed_at is not None and self.removed_at < self.until:
            return self.removed_at
        return self.until

    def active(self, now: datetime) -> bool:
        """Whether it is in effect at ``now``."""
        return self.created_at <= now < self.ends_at

    def matches(self, pipeline: str, rule: str, key_text: str) -> bool:
        """Whether it is about this pipeline's alert of ``rule`` for this key (JSON text)."""
        return (
            (self.pipeline is None or self.pipeline == pipeline)
            and (self.rule is None or self.rule == rule)
            and key_matches(key_text, self.key)
        )

    def mutes(
        self, pipeline: str, rule: str, key_text: str, *, since: datetime, now: datetime
    ) -> bool:
        """Whether it mutes a notification queued at ``since`` and about to be sent ``now``.

        It must match, and have been in effect at some moment in between.
        """
        return (
            self.matches(pipeline, rule, key_text)
            and self.created_at <= now
            and self.ends_at > since
        )

    def scope(self) -> str:
        """What it matches, in words: ``rule hot, key {"room": "r1"}``."""
        parts = []
        if self.pipeline is not None:
            parts.append(f"pipeline {self.pipeline}")
        if self.rule is not None:
            parts.append(f"rule {self.rule}")
        if self.key is not None:
            parts.append(f"key {json.dumps(dict(self.key), sort_keys=True)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class RegisteredOutbox:
    """A webhook sink's outbox, as the sink recorded it when it opened."""

    pipeline: str
    outbox: Path
    endpoint: str  # scheme, host and port only: a URL's path may hold a secret


class AlertActions:
    """Acknowledgements and silences of one store's alerts, in the SQLite file beside it.

    Every method opens the file, does one thing in one transaction and closes it, so an
    instance is cheap and safe to share; reading a file that does not exist yet gives
    nothing and creates nothing.
    """

    def __init__(self, path: Path | str, *, clock: Clock = _utc_now) -> None:
        self.path = Path(path)
        self._clock = clock

    @classmethod
    def beside(cls, store: Path | str, *, clock: Clock = _utc_now) -> AlertActions:
        """The actions of the alerts in the DuckDB store ``store``."""
        return cls(actions_path(store), clock=clock)

    # -- acknowledgements --------------------------------------------------------------------
    def acknowledge(
        self, alert_id: str, *, by: str, note: str = "", pipeline: str | None = None
    ) -> Acknowledgement:
        """Record that ``by`` has seen the alert; its state stays as it is."""
        by, note = _checked_name(by), _checked_note(note)
        if not alert_id.strip():
            msg = "an alert id is needed: `sensorstream alerts list` shows them"
            raise StoreError(msg)
        at = self._clock()
        with self._writing("acknowledging an alert") as con:
            cursor = con.execute(
                "INSERT INTO acknowledgements (alert_id, pipeline, by, note, at_us) "
                "VALUES (?, ?, ?, ?, ?)",
                [alert_id, pipeline, by, note, to_us(at)],
            )
            number = int(cursor.lastrowid or 0)
        return Acknowledgement(number, alert_id, pipeline, by, note, at)

    def acknowledgements(self, alert_id: str | None = None) -> list[Acknowledgement]:
        """Every acknowledgement (or one alert's), oldest first."""
        query = "SELECT id, alert_id, pipeline, by, note, at_us FROM acknowledgements"
        parameters: list[object] = []
        if alert_id is not None:
            query += " WHERE alert_id = ?"
            parameters.append(alert_id)
        rows = self._read(query + " ORDER BY at_us, id", parameters)
        return [
            Acknowledgement(int(i), str(a), p, str(b), str(n), from_us(int(t)))
            for i, a, p, b, n, t in rows
        ]

    # -- silences -------------------------------------------------------------------------
    def silence(
        self,
        *,
        until: datetime,
        by: str,
        rule: str | None = None,
        key: Mapping[str, KeyValue] | None = None,
        pipeline: str | None = None,
        note: str = "",
    ) -> Silence:
        """Mute notifications of a rule's alerts, or a key's, or one key's of a rule, until then."""
        by, note = _checked_name(by), _checked_note(note)
        now = self._clock()
        if rule is None and not key:
            msg = "a silence needs a rule, a key or both (muting every alert is not offered)"
            raise StoreError(msg)
        if until.tzinfo is None or until.utcoffset() is None:
            msg = f"until={until.isoformat()} has no time zone; give an aware time"
            raise StoreError(msg)
        if until <= now:
            msg = f"until={until.isoformat()} is not in the future (now: {now:%Y-%m-%d %H:%M:%S}Z)"
            raise StoreError(msg)
        if key is not None:
            for name, value in key.items():
                if not _scalar(value):  # from JSON (an HTTP request), anything may come
                    msg = f"key value {name!r} must be text, a number, true/false or null"
                    raise StoreError(msg)
        key_json = json.dumps(dict(key), sort_keys=True) if key else None
        with self._writing("adding a silence") as con:
            cursor = con.execute(
                "INSERT INTO silences (pipeline, rule, key, until_us, by, note, created_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [pipeline, rule, key_json, to_us(until), by, note, to_us(now)],
            )
            number = int(cursor.lastrowid or 0)
        return Silence(number, pipeline, rule, dict(key) if key else None, until, by, note, now)

    def unsilence(self, silence_id: int, *, by: str | None = None) -> Silence:
        """End a silence now; it stays listed (with ``--all``) as part of the history."""
        now = self._clock()
        with self._writing("ending a silence") as con:
            rows = con.execute(
                f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = ?", [silence_id]
            ).fetchall()
            if not rows:
                msg = (
                    f"no silence {silence_id} in {self.path}; "
                    "`sensorstream alerts silences --all` lists them"
                )
                raise StoreError(msg)
            silence = _silence(rows[0])
            if not silence.active(now):
                msg = f"silence {silence_id} already ended at {silence.ends_at:%Y-%m-%d %H:%M:%S}Z"
                raise StoreError(msg)
            con.execute(
                "UPDATE silences SET removed_us = ?, removed_by = ? WHERE id = ?",
                [to_us(now), by, silence_id],
            )
        return replace(silence, removed_at=now, removed_by=by)

    def silences(self, *, include_ended: bool = False) -> list[Silence]:
        """The silences in effect now (or all of them, ended too), oldest first."""
        every = [_silence(row) for row in self._read(f"SELECT {_SILENCE_COLUMNS} FROM silences")]
        now = self._clock()
        kept = every if include_ended else [s for s in every if s.active(now)]
        return sorted(kept, key=lambda s: (s.created_at, s.id))

    # -- where webhook deliveries are recorded --------------------------------------------
    def register_outbox(self, pipeline: str, outbox: Path, endpoint: str) -> None:
        """Note that a webhook sink of ``pipeline`` records its deliveries in ``outbox``."""
        with self._writing("registering a webhook outbox") as con:
            con.execute(
                "INSERT OR REPLACE INTO webhook_outboxes VALUES (?, ?, ?, ?)",
                [pipeline, str(outbox.resolve()), endpoint, to_us(self._clock())],
            )

    def outboxes(self, pipeline: str | None = None) -> list[RegisteredOutbox]:
        """The webhook outboxes registered (for one pipeline, or all)."""
        query = "SELECT pipeline, outbox, endpoint FROM webhook_outboxes"
        parameters: list[object] = []
        if pipeline is not None:
            query += " WHERE pipeline = ?"
            parameters.append(pipeline)
        rows = self._read(query + " ORDER BY pipeline, outbox", parameters)
        return [RegisteredOutbox(str(p), Path(o), str(e)) for p, o, e in rows]

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def _writing(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, waiting for another writer up to :data:`LOCK_WAIT_S`."""
        try:
            con = connect(self.path, create=True)
        except sqlite3.Error as error:
            raise StoreError(_failed(doing, self.path, error)) from error
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except sqlite3.Error as error:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise StoreError(_failed(doing, self.path, error)) from error
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _read(self, query: str, parameters: list[object] | None = None) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        try:
            con = connect(self.path, create=False)
            try:
                return con.execute(query, parameters or []).fetchall()
            finally:
                con.close()
        except sqlite3.Error as error:
            raise StoreError(_failed("reading", self.path, error)) from error


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
        if version not in (0, _FORMAT):
            msg = (
                f"{path} was written by another version of sensorstream (format {version}, "
                f"this one reads {_FORMAT})"
            )
            raise StoreError(msg)
        if create and version == 0:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={_FORMAT}; COMMIT;")
        con.execute("PRAGMA synchronous=FULL")
    except BaseException:
        con.close()
        raise
    return con


def _failed(doing: str, path: Path, error: sqlite3.Error) -> str:
    if "locked" in str(error).lower():
        return (
            f"{doing} in {path} failed: another process kept the file locked for "
            f"{LOCK_WAIT_S:.0f} s; try again"
        )
    return f"{doing} in {path} failed: {error}"


def _silence(row: tuple[Any, ...]) -> Silence:
    number, pipeline, rule, key, until, by, note, created, removed, removed_by = row
    return Silence(
        id=int(number),
        pipeline=pipeline,
        rule=rule,
        key=json.loads(key) if key is not None else None,
        until=from_us(int(until)),
        by=str(by),
        note=str(note),
        created_at=from_us(int(created)),
        removed_at=from_us(int(removed)) if removed is not None else None,
        removed_by=removed_by,
    )


def _checked_name(by: str) -> str:
    by = by.strip()
    if not by or len(by) > MAX_NAME:
        msg = f"--by must name who acts, in 1 to {MAX_NAME} characters (got {len(by)})"
        raise StoreError(msg)
    return by


def _checked_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        msg = f"a note may be {MAX_NOTE} characters long at most (got {len(note)})"
        raise StoreError(msg)
    return note


class SilenceWatcher:
    """The silences of one actions file as a sink sees them, re-read only after a change.

    Checking costs one ``PRAGMA data_version`` (it changes whenever another connection has
    committed); until the file exists, one ``stat`` per ``recheck_s``. A file that cannot be
    read keeps the silences last read (``problem`` says why): a sink must not fail for it.
    """

    def __init__(self, path: Path, *, recheck_s: float = 1.0) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self.problem: str | None = None
        self._connection: sqlite3.Connection | None = None
        self._version: int | None = None
        self._silences: list[Silence] = []
        self._next_look = 0.0

    def current(self) -> list[Silence]:
        """Every silence the file holds (ended ones too), as of the last change."""
        try:
            con = self._connect()
            if con is None:
                return self._silences
            version = int(con.execute("PRAGMA data_version").fetchone()[0])
            if version != self._version:
                rows = con.execute(f"SELECT {_SILENCE_COLUMNS} FROM silences").fetchall()
                self._silences = [_silence(row) for row in rows]
                self._version = version
            self.problem = None
        except (sqlite3.Error, StoreError, ValueError) as error:
            self.problem = f"cannot read silences from {self.path}: {error}"
        return self._silences

    def muting(
        self, pipeline: str, rule: str, key_text: str, *, since: datetime, now: datetime
    ) -> Silence | None:
        """The first silence that mutes this notification (see :meth:`Silence.mutes`), if any."""
        for silence in self.current():
            if silence.mutes(pipeline, rule, key_text, since=since, now=now):
                return silence
        return None

    def close(self) -> None:
        """Release the file."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._connection is not None:
            return self._connection
        now = time.monotonic()
        if now < self._next_look:
            return None
        self._next_look = now + self.recheck_s
        if not self.path.exists():
            return None
        self._connection = connect(self.path, create=False)
        return self._connection
