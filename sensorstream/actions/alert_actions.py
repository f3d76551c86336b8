"""Acknowledgements and silences of alerts: who has seen an alert, and which notifications to mute.

They live in a small SQLite file beside the DuckDB store (``out.duckdb`` ->
``out.duckdb.alerts.sqlite``,
:func:`~sensorstream.actions.actions_file.actions_path`), not in the store itself. DuckDB lets
one process open a file for writing and no other process open it at all meanwhile, so an
operator could acknowledge or silence nothing while the pipeline raising the alerts runs,
which is when it matters most. SQLite in WAL mode lets any number of processes read while
one writes, takes writers one at a time after a short lock wait, and makes each commit
durable (``synchronous=FULL``): the CLI and the HTTP API
(:mod:`sensorstream.api.actions`), through the same :class:`AlertActions`, write while
the pipeline's sinks read. Considered and left: a table in the DuckDB store (locked while
a pipeline runs); asking the running pipeline to write for us (the embedded runner has
no such channel, and nothing would work while no pipeline runs); a JSON-lines file of our
own (its locking, torn writes and compaction would be ours to get right, and SQLite
already gets them right).

What is kept, beside the alerts' transitions in the store (joined by ``alert_id``)::

    acknowledgements  alert_id, pipeline, by, note, at: who saw it; never changes its state
    silences          pipeline, rule, key (JSON: values the alert's key must have), until,
                      by, note, created_at, removed_at, removed_by; a null pipeline, rule
                      or key matches any
    webhook_outboxes  pipeline, outbox, endpoint: where webhook sinks record deliveries,
                      so ``sensorstream alerts show`` finds them

How silences mute (notifications, never alerts) and how sinks see a new one at once:
:mod:`~sensorstream.actions.silences`; the file itself: :mod:`~sensorstream.actions.actions_file`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sensorstream.actions.actions_file import actions_path, connect, failed, from_us, to_us
from sensorstream.actions.silences import (
    SILENCE_COLUMNS,
    KeyValue,
    Silence,
    is_scalar,
    silence_from_row,
)
from sensorstream.errors import StoreError

Clock = Callable[[], datetime]
MAX_NAME, MAX_NOTE = 200, 2000  # characters of ``by`` and of a note


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
                if not is_scalar(value):  # from JSON (an HTTP request), anything may come
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
                f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?", [silence_id]
            ).fetchall()
            if not rows:
                msg = (
                    f"no silence {silence_id} in {self.path}; "
                    "`sensorstream alerts silences --all` lists them"
                )
                raise StoreError(msg)
            silence = silence_from_row(rows[0])
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
        every = [
            silence_from_row(row) for row in self._read(f"SELECT {SILENCE_COLUMNS} FROM silences")
        ]
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
            raise StoreError(failed(doing, self.path, error)) from error
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except sqlite3.Error as error:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise StoreError(failed(doing, self.path, error)) from error
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
            raise StoreError(failed("reading", self.path, error)) from error


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
