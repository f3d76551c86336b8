"""Silences: which alerts' notifications to mute, until when, and how sinks keep up with them.

A silence names a rule, key values (JSON: values the alert's key must have) or both, and
optionally a pipeline; a null one matches any. It mutes **notifications** (a webhook sends
nothing and records the delivery as ``silenced``; the console dims the line), never alerts:
transitions are stored as always. A notification is muted when a matching silence was in
effect at any moment between the transition's queuing and the attempt to send it: a
silence set while a transition waits for a retry mutes it, and a backlog sent after a
silence ended stays muted (:meth:`Silence.mutes`).

Sinks see a new silence at once: :class:`SilenceWatcher` re-reads the file only after
another connection committed to it (SQLite's ``data_version``), one pragma per check.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sensorstream.actions.actions_file import connect, from_us
from sensorstream.errors import ConfigError, StoreError

KeyValue = str | int | float | bool | None
SILENCE_COLUMNS = "id, pipeline, rule, key, until_us, by, note, created_us, removed_us, removed_by"


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


def parse_key(flag: str, text: str) -> dict[str, KeyValue]:
    """Key values written as a JSON object (the CLI's ``--key``, the API's ``key``), checked.

    ``flag`` names where it was written, in the message of a mistake.

    >>> parse_key("--key", '{"room": "r1"}')
    {'room': 'r1'}
    """
    example = '\'{"room": "r1"}\''
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not value:
        msg = f"{flag} {text}: not a JSON object of key values; write e.g. {flag} {example}"
        raise ConfigError(msg)
    for name, item in value.items():
        if not is_scalar(item):
            msg = f"{flag} {text}: {name!r} must be text, a number, true/false or null"
            raise ConfigError(msg)
    return value


def is_scalar(value: object) -> bool:
    """Whether a key value is one a silence can hold (a JSON scalar)."""
    return value is None or isinstance(value, str | int | float | bool)


def _same(stored: object, wanted: object) -> bool:
    # JSON's true is not 1, though Python's True == 1.
    return stored == wanted and isinstance(stored, bool) == isinstance(wanted, bool)


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


def silence_from_row(row: tuple[Any, ...]) -> Silence:
    """A silence from a row of ``SELECT {SILENCE_COLUMNS} FROM silences``."""
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
                rows = con.execute(f"SELECT {SILENCE_COLUMNS} FROM silences").fetchall()
                self._silences = [silence_from_row(row) for row in rows]
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
