"""The alert lifecycle: from each observation's level to state changes, ids and flapping.

A rule's condition gives every observation of a key a **level**: 0 is ok, 1..n a severity
(``notice``, ``warning``, ``critical``, ...). The lifecycle turns the sequence of levels of
each key into an alert's states:

::

        level > 0            N consecutive and held for T
    ok ──────────▶ pending ───────────────────────────────▶ firing
     ▲                │                                        │
     └── resolved ◀───┴──────────── level back to 0 ◀──────────┘

with ``consecutive: N`` (default 1) and ``for: T`` (default 0: firing at once). Severity
changes while pending or firing are transitions too. Nothing else is emitted: a key that
stays firing over a thousand readings emits one transition, not a thousand.

An alert's id is a hash of the rule, the key and the event time its episode began (its first
breaching observation), so the same input gives the same alerts and ids, with or without a
crash in the middle; a transition's id adds its number within the alert.

**Flapping.** An alert that changes state more than ``flapping.changes`` times within
``flapping.within`` of event time goes to ``flapping``: one transition, and then no other
until it has been ``flapping.settle`` without a change, when it takes the state it has then
(``resolved`` if ok, else ``firing``). The episodes in between are not reported one by one.

The first part (levels to per-observation states) is one pass per key over sorted rows
(:mod:`sensorstream.engine.rules.states`); only the rare changes reach the second part, a
loop over change rows that assigns ids and numbers, and handles flapping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, NamedTuple, get_args

import polars as pl

from sensorstream.engine.outputs import TRANSITION_SCHEMA
from sensorstream.engine.rules.states import (
    FIRING_,
    OK_,
    PENDING_,
    RUN_COUNT,
    RUN_START,
    SEVERITY,
    STATE,
)
from sensorstream.engine.rules.states import LEVEL as LEVEL
from sensorstream.engine.time import micros
from sensorstream.errors import ConfigError

OK, PENDING, FIRING, RESOLVED, FLAPPING = "ok", "pending", "firing", "resolved", "flapping"
# The states an alert can be in, as its transitions report them ("ok" never is one: resolved).
AlertState = Literal["pending", "firing", "flapping", "resolved"]
ALERT_STATES: tuple[AlertState, ...] = get_args(AlertState)
_OK, _PENDING, _FIRING = OK_, PENDING_, FIRING_
_NAMES = {_OK: OK, _PENDING: PENDING, _FIRING: FIRING}

# Carried per key from one release to the next: where its breach run stands.
LIFECYCLE_CARRY: dict[str, pl.DataType] = {
    RUN_START: pl.Int64(),
    RUN_COUNT: pl.Int64(),
    STATE: pl.Int8(),
    SEVERITY: pl.Int8(),
}
# Kept per key with something to remember (an open alert, recent changes) for the loop over
# changes; as columns only in snapshots.
ALERT, SEQUENCE, EPISODE = "__alert", "__sequence", "__episode"
CHANGES, FLAPPING_SINCE, SHOWN = "__changes", "__flapping_since", "__shown"
ALERT_COLUMNS: dict[str, pl.DataType] = {
    ALERT: pl.String(),
    SEQUENCE: pl.Int64(),
    EPISODE: pl.Int64(),
    CHANGES: pl.List(pl.Int64()),
    FLAPPING_SINCE: pl.Int64(),
    SHOWN: pl.String(),
}


@dataclass(frozen=True)
class Flapping:
    """When an alert is flapping: more than ``changes`` state changes within ``within``."""

    changes: int = 6
    within: timedelta = timedelta(minutes=10)
    settle: timedelta = timedelta(minutes=10)
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.changes < 2 or self.within <= timedelta(0) or self.settle <= timedelta(0):
            msg = "flapping needs changes >= 2 and a positive within and settle"
            raise ConfigError(msg)


@dataclass(frozen=True)
class AlertPolicy:
    """How breaches become alerts: consecutive observations and duration before firing."""

    consecutive: int = 1
    hold: timedelta = timedelta(0)  # YAML ``for``
    flapping: Flapping = field(default_factory=Flapping)

    def __post_init__(self) -> None:
        if self.consecutive < 1 or self.hold < timedelta(0):
            msg = "consecutive must be at least 1 and for must not be negative"
            raise ConfigError(msg)


def alert_id(rule: str, key_text: str, started_us: int) -> str:
    """The deterministic id of an alert episode.

    >>> alert_id("hot", '{"device_id": "a"}', 60_000_000)
    '0a92485606a17c9d8239893e'
    """
    digest = hashlib.sha256(f"{rule}\0{key_text}\0{started_us}".encode())
    return digest.hexdigest()[:24]


_KEY_JSON = json.JSONEncoder(sort_keys=True, default=str, separators=(", ", ": "))


def key_text(values: dict[str, Any]) -> str:
    """A key's values as compact JSON with sorted names: how transitions name their key.

    >>> key_text({"room": "r1", "device_id": "a"})
    '{"device_id": "a", "room": "r1"}'
    """
    return _KEY_JSON.encode(values)


@dataclass
class KeyAlert:
    """What the loop over changes keeps of a key between releases, while there is any."""

    alert: str | None = None  # the open alert's id, None when the key is ok
    sequence: int = 0  # transitions of the open alert so far
    episode: int | None = None  # event time the open alert began
    changes: list[int] = field(default_factory=list)  # times of recent state changes
    flapping_since: int | None = None
    shown: str = OK  # the state last reported
    text: str | None = field(default=None, compare=False)  # the key as JSON, once made

    def key_text(self, key: dict[str, Any]) -> str:
        """The key's text (:func:`key_text`), made once per key while it is remembered."""
        if self.text is None:
            self.text = key_text(key)
        return self.text

    @staticmethod
    def of(row: dict[str, Any]) -> KeyAlert:
        """From a snapshot's row (its alert columns, possibly null)."""
        return KeyAlert(
            alert=row.get(ALERT),
            sequence=int(row.get(SEQUENCE) or 0),
            episode=row.get(EPISODE),
            changes=list(row.get(CHANGES) or []),
            flapping_since=row.get(FLAPPING_SINCE),
            shown=row.get(SHOWN) or OK,
        )

    def idle(self, now: int, within: int) -> bool:
        """Whether nothing is left to remember at event time ``now``.

        No open alert, not flapping, and no change recent enough to count towards flapping.
        """
        return (
            self.alert is None
            and self.flapping_since is None
            and self.shown == OK
            and (not self.changes or self.changes[-1] <= now - within)
        )

    def columns(self) -> dict[str, Any]:
        """As columns (of a snapshot)."""
        return {
            ALERT: self.alert,
            SEQUENCE: self.sequence,
            EPISODE: self.episode,
            CHANGES: self.changes,
            FLAPPING_SINCE: self.flapping_since,
            SHOWN: self.shown,
        }


class Position(NamedTuple):
    """Where a key stands after an observation: state, severity, and its breach run.

    Tuples, not dataclasses: one or two are made per state change, in a loop.
    """

    state: int
    severity: int
    run_start: int | None = None
    run_count: int = 0


class Change(NamedTuple):
    """One observation where a key's state or severity changed, and the position it gave."""

    key: dict[str, Any]
    at: int  # event time, us
    position: Position
    value: float | None
    reason: str


class Reporter:
    """Turns a key's changes into transitions: ids, numbers, and flapping suppression."""

    def __init__(self, rule: str, policy: AlertPolicy, severities: Sequence[str]) -> None:
        self.rule, self.policy, self.severities = rule, policy, tuple(severities)
        self.within = micros(policy.flapping.within)
        self.settle = micros(policy.flapping.settle)
        self.hold = micros(policy.hold)

    def severity_name(self, level: int) -> str | None:
        """The name of a level; None for 0 (ok)."""
        return self.severities[level - 1] if level > 0 else None

    def report(self, alert: KeyAlert, change: Change, before: Position) -> list[dict[str, Any]]:
        """The transitions a change gives (none while flapping), updating ``alert``.

        What happened between the key's last observation and this one comes first
        (:meth:`catch_up`): a pending run that held long enough fired at the instant it had,
        a flapping key settled.
        """
        records, before = self.catch_up(alert, change.key, change.at, before)
        after = change.position
        if (after.state, after.severity) == (before.state, before.severity):
            return records
        records += self._transition(
            alert, change.key, change.at, before, after, change.value, change.reason
        )
        return records

    def catch_up(
        self, alert: KeyAlert, key: dict[str, Any], now: int, before: Position
    ) -> tuple[list[dict[str, Any]], Position]:
        """What happened by event time ``now`` with no observation, in event-time order.

        Two things happen with time alone: a pending run that has held for ``for`` (and had
        its ``consecutive`` observations) fires at its start plus ``for``; a flapping key
        quiet for ``settle`` since its last change settles. Whichever is due first happens
        first (a firing while flapping is a change, which puts settling off). The watermark's
        clock and the next observation both call this, so the instants never depend on
        which came first. Returns the transitions and the position after them.
        """
        records: list[dict[str, Any]] = []
        while True:
            fire_at = self._fire_time(before)
            settle_at = self._settle_time(alert)
            due = [t for t in (fire_at, settle_at) if t is not None and t <= now]
            if not due:
                return records, before
            if fire_at is not None and fire_at == min(due):
                after = Position(_FIRING, before.severity, before.run_start, before.run_count)
                reason = f"breaching for {self.policy.hold}"
                records += self._transition(alert, key, fire_at, before, after, None, reason)
                before = after
            elif settle_at is not None:
                records.append(self._settle(alert, key, settle_at, before))

    def _fire_time(self, before: Position) -> int | None:
        """When a pending run fires by holding long enough, if it does by time alone."""
        if (
            before.state != _PENDING
            or self.hold <= 0
            or before.run_start is None
            or before.run_count < self.policy.consecutive
        ):
            return None
        return before.run_start + self.hold

    def _settle_time(self, alert: KeyAlert) -> int | None:
        """When a flapping key settles if nothing changes, if it is flapping."""
        if alert.flapping_since is None or not alert.changes:
            return None
        return alert.changes[-1] + self.settle

    def _settle(
        self, alert: KeyAlert, key: dict[str, Any], at: int, current: Position
    ) -> dict[str, Any]:
        alert.flapping_since = None
        alert.changes = []
        name = _NAMES[current.state] if current.state != _OK else RESOLVED
        reason = f"no state change for {self.policy.flapping.settle}: settled"
        record = self._record(alert, key, at, name, current.severity, None, reason)
        if current.state == _OK:
            alert.alert, alert.episode = None, None
        return record

    def _transition(
        self,
        alert: KeyAlert,
        key: dict[str, Any],
        at: int,
        before: Position,
        after: Position,
        value: float | None,
        reason: str,
    ) -> list[dict[str, Any]]:
        """Bookkeeping of one state or severity change, and its transition unless flapping."""
        if after.state != before.state:
            alert.changes = [t for t in alert.changes if t > at - self.within]
            alert.changes.append(at)
        if before.state == _OK and after.state != _OK and alert.flapping_since is None:
            started = after.run_start if after.run_start is not None else at
            alert.alert = alert_id(self.rule, alert.key_text(key), started)
            alert.episode, alert.sequence = started, 0
        if alert.flapping_since is not None:
            return []  # quiet until it settles
        flapping = self.policy.flapping
        if (
            flapping.enabled
            and after.state != before.state
            and len(alert.changes) > flapping.changes
        ):
            alert.flapping_since = at
            why = (
                f"{len(alert.changes)} state changes within {flapping.within}: flapping; "
                "quiet until it settles"
            )
            return [self._record(alert, key, at, FLAPPING, after.severity, value, why)]
        if after.state == _OK and alert.alert is None:
            return []
        name = _NAMES[after.state] if after.state != _OK else RESOLVED
        record = self._record(alert, key, at, name, after.severity, value, reason)
        if after.state == _OK:
            alert.alert, alert.episode = None, None
        return [record]

    def _record(
        self,
        alert: KeyAlert,
        key: dict[str, Any],
        at: int,
        state: str,
        severity: int,
        value: float | None,
        reason: str,
    ) -> dict[str, Any]:
        if alert.alert is None:  # not reached: an alert is open whenever a change is reported
            alert.alert, alert.episode = alert_id(self.rule, alert.key_text(key), at), at
        record = {
            "transition_id": f"{alert.alert}-{alert.sequence}",
            "alert_id": alert.alert,
            "rule": self.rule,
            "key": alert.key_text(key),
            "state": state,
            "previous_state": alert.shown,
            "severity": self.severity_name(severity),
            "event_time": at,
            "started_at": alert.episode,
            "value": value,
            "reason": reason,
            "sequence": alert.sequence,
            "kind": "transition",
        }
        alert.sequence += 1
        alert.shown = OK if state == RESOLVED else state
        return record


def transitions_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    """Transition records as a frame (times given as microseconds since the epoch)."""
    times = {"event_time": pl.Int64(), "started_at": pl.Int64()}
    frame = pl.DataFrame(records, schema={**TRANSITION_SCHEMA, **times}, orient="row")
    return frame.with_columns(pl.col(name).cast(TRANSITION_SCHEMA[name]) for name in times)
