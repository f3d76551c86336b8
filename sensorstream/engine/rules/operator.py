"""Running a rule in one partition: observations in event-time order, judged, turned into alerts.

**Over readings** (or a derive step), a rule holds each observation until the watermark
passes it, then judges the observations of each key in event-time order: disorder within
the out-of-orderness bound changes nothing. An observation arriving behind the watermark is
late for the rule: counted (``late:<rule>``) and kept in the late store, never judged.

**Over window results**, a rule judges each window's result once it is final, in event-time
order (a result's time is its window's last instant). A late reading within the allowed
lateness may then correct a window the rule has already judged. The rule does not rewrite
what it reported: it re-judges the corrected result, and if that result alone would have had
another level, it records a ``correction`` for the key (with the window, the new value and
what the judgment would have been), which the alert store keeps beside the transitions.
A rule declared with ``judge: final`` instead waits until a window can no longer change
(the watermark past its end plus the allowed lateness): no corrections, later alerts. How
observations come in (late, held, due) is :mod:`.intake`'s.

Keys that nothing can move are left alone: a key with no open alert and no observation its
condition could breach on costs one filter, not a sort.

**Time alone** can make observations (a deadman's silences, :mod:`.deadman`): each release
asks the condition for them up to the watermark, and keys no observation reached are woken
when the condition says time is due for them. A processing-time deadman is judged on the
ticks instead (:mod:`.ticked`). Conditions without a clock (threshold, when...) skip both
at the cost of one attribute test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import (
    END,
    FINAL,
    OP,
    OPENED_LATE,
    REVISION,
    START,
    WATERMARK,
)
from sensorstream.engine.rules.conditions import CARRIED, Condition
from sensorstream.engine.rules.intake import Intake, Judge, key_hash
from sensorstream.engine.rules.lifecycle import (
    LIFECYCLE_CARRY,
    AlertPolicy,
    Change,
    KeyAlert,
    Position,
    Reporter,
    transitions_frame,
)
from sensorstream.engine.rules.snapshots import alerts_frame, alerts_of, pickled, unpickled
from sensorstream.engine.rules.states import (
    LEVEL,
    PENDING_,
    RUN_COUNT,
    RUN_START,
    SEVERITY,
    STATE,
    States,
    observation_states,
)
from sensorstream.engine.time import micros
from sensorstream.engine.watermarks import MAX_WATERMARK
from sensorstream.readings import TS

if TYPE_CHECKING:
    from sensorstream.engine.tables import VersionedTable


class RuleOperator(Intake, Operator):
    """Judges one rule's observations for one partition and reports its alerts' transitions."""

    def __init__(
        self,
        name: str,
        *,
        condition: Condition,
        key: Sequence[str],
        policy: AlertPolicy,
        over_results: bool,
        identity: Sequence[str],
        allowed_lateness_us: int,
        judge: Judge = "on_close",
    ) -> None:
        self.name = name
        self.condition = condition
        self.key = list(key)
        self.policy = policy
        self.over_results = over_results
        self.identity = list(identity)  # a result's identity: its step's key and window start
        self.lateness = allowed_lateness_us
        self.judge = judge
        self.reporter = Reporter(name, policy, condition.severities)
        self.buffer: pl.DataFrame | None = None  # held until released in event time
        self.carry: pl.DataFrame | None = None  # one row per key: where it stands
        self.judged: pl.DataFrame | None = None  # recent judged results, for corrections
        self.alerts: dict[tuple[Any, ...], KeyAlert] = {}  # keys with something to remember
        self.hold = micros(policy.hold)
        self.timed = condition.timer is not None  # time alone makes observations
        self.tables: dict[str, VersionedTable] = {}  # what the condition reads, by name
        # The only columns a rule keeps of what it reads: held rows are otherwise copied
        # whole at every step of the way.
        wanted = [*self.key, TS, WATERMARK, *condition.reads()]
        if over_results:
            wanted += [*self.identity, START, END, REVISION, FINAL, OP, OPENED_LATE]
        self.wanted = list(dict.fromkeys(wanted))

    # -- taking observations in ---------------------------------------------------------------
    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Hold new observations, judge what the watermark has passed, report the changes."""
        batch = batch.select(name for name in self.wanted if name in batch.columns)
        if not self.over_results:
            late, due = self._intake(batch, watermark_after)
            records = self._release(due, watermark_after, active=True)
            return OperatorOutput(rows=self._frame(records), late=late)
        fresh, records = self._results(batch)
        fresh = self._observed(fresh)
        if self.judge == "final":
            self._hold(fresh)  # a result replaces its held earlier revision first
            due = self._due(watermark_after)
        else:
            due = self._due(watermark_after)
            arrived, held = self._split(fresh, watermark_after)
            self._hold(held)
            if arrived is not None:
                due = arrived if due is None else pl.concat([due, arrived], how="diagonal_relaxed")
        records += self._release(due, watermark_after)
        return OperatorOutput(rows=self._frame(records))

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Judge what the watermark has now passed, and run the clocks of pending alerts."""
        return OperatorOutput(rows=self._frame(self._release(self._due(watermark), watermark)))

    def _release(
        self, due: pl.DataFrame | None, watermark: int, *, active: bool = False
    ) -> list[dict[str, Any]]:
        """Judge the observations now due, then run the clocks up to the watermark.

        ``active``: ``due`` holds only the keys that could change (:meth:`_active` done).
        """
        records: list[dict[str, Any]] = []
        passed = self._passed(watermark)
        now = passed if watermark < MAX_WATERMARK else None  # the end is no passing time
        if due is not None and due.height:
            records += self._judge(due, now, active=active)
        if self.timed:
            records += self._wake(now)
        records += self._clocks(passed)
        self._forget(passed, watermark)
        return records

    # -- judging ------------------------------------------------------------------------------
    def _judge(
        self,
        observations: pl.DataFrame | None,
        now: int | None,
        woken: pl.DataFrame | None = None,
        *,
        active: bool = False,
    ) -> list[dict[str, Any]]:
        """Levels, states and transitions of released observations (any order).

        ``woken``: keys (from the carry) that time alone may change, judged with or
        without observations of their own; ``now``: how far time has passed (None: no
        further than the observations); ``active``: the observations hold only keys that
        could change (:meth:`_active` done).
        """
        frames: list[pl.DataFrame] = []
        keys = woken
        if observations is not None:
            rows = observations if active else self._active(observations)
            if rows.height:
                carry_columns = {**self.condition.carry(), **LIFECYCLE_CARRY, LEVEL: pl.Int8()}
                frames.append(
                    rows.with_columns(
                        pl.lit(False).alias(CARRIED),
                        *(pl.lit(None, kind).alias(name) for name, kind in carry_columns.items()),
                    )
                )
                if self.key:
                    seen = rows.select(self.key).unique()
                    keys = seen if keys is None else pl.concat([keys, seen]).unique()
        if not frames and woken is None:
            return []
        if self.carry is not None and self.carry.height:
            carried = (
                self.carry
                if not self.key or keys is None
                else self.carry.join(keys, on=self.key, how="semi", nulls_equal=True)
            )
            frames.insert(0, carried.with_columns(pl.lit(True).alias(CARRIED)))
        if not frames:
            return []
        frame = self._sorted(pl.concat(frames, how="diagonal_relaxed"))
        if self.timed:
            passed = self.condition.passing(frame, self.key, now)
            if passed is not None:
                passed = passed.with_columns(pl.lit(False).alias(CARRIED))
                frame = self._sorted(pl.concat([frame, passed], how="diagonal_relaxed"))
        frame = self.condition.level(self._looked_up(frame), self.key)
        states = observation_states(
            frame, self.key, consecutive=self.policy.consecutive, hold_us=self.hold
        )
        records = self._changes(frame, states)
        last = states.last_rows()
        self._remember(frame[last].with_columns(states.columns(last)))
        if self.over_results and self.judge == "on_close":
            observed = ~pl.col(CARRIED) & pl.col(END).is_not_null()  # not a deadman's silence
            self._note_judged(frame.filter(observed))
        return records

    def bind_tables(self, tables: Mapping[str, VersionedTable]) -> None:
        """Find the tables the condition reads (a range's per-key bounds)."""
        self.tables = {lookup.table: tables[lookup.table] for lookup in self.condition.lookups()}

    def _looked_up(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with the columns its condition reads from tables, by the rule's key."""
        for lookup in self.condition.lookups():
            frame = self.tables[lookup.table].columns_for(frame, self.key, lookup.columns)
        return frame

    def _sorted(self, frame: pl.DataFrame) -> pl.DataFrame:
        """By key, the carried row first, then event time (arrival order breaks ties)."""
        return frame.sort(
            [*self.key, CARRIED, TS],
            descending=[False] * len(self.key) + [True, False],
            maintain_order=True,
            nulls_last=True,
        )

    def _wake(self, now: int | None) -> list[dict[str, Any]]:
        """Judge the carried keys that time alone changes by ``now`` (a deadman's silences)."""
        due = self.condition.due(now) if now is not None else None
        if due is None or self.carry is None or self.carry.height == 0:
            return []
        woken = self.carry.filter(due.fill_null(False))
        if woken.height == 0:
            return []
        return self._judge(None, now, woken.select(self.key))

    def _active(self, observations: pl.DataFrame) -> pl.DataFrame:
        """The observations of keys that could change: a candidate row, or a run under way.

        A key with neither is at rest (ok, level 0), and a row its condition cannot breach
        on leaves it there: its rows are not judged. Keys are matched by a 64-bit hash of
        their values, much cheaper than matching the values themselves; a collision only
        lets a resting key's rows through, which changes nothing.
        """
        candidates = self.condition.candidates()
        if candidates is None or not self.key:
            return observations
        hashed = key_hash(self.key)
        shown = observations.filter(candidates.fill_null(False)).select(hashed).to_series()
        keys = pl.concat([shown, *self._under_way()]).unique()
        if keys.len() == 0:
            return observations.clear()
        return observations.filter(hashed.is_in(keys.implode()))

    def _changes(self, frame: pl.DataFrame, states: States) -> list[dict[str, Any]]:
        """Transitions of the observations whose state or severity changed."""
        where = np.flatnonzero(states.changed)
        if where.shape[0] == 0:
            return []
        value = self.condition.value
        shown_value = [pl.col(value).alias("__shown")] if value is not None else []
        picked = frame.select(*self.key, pl.col(TS).cast(pl.Int64), LEVEL, *shown_value)[where]
        records: list[dict[str, Any]] = []
        for i, row in zip(where.tolist(), picked.iter_rows(), strict=True):
            key = dict(zip(self.key, row, strict=False))
            at, level = row[len(self.key)], row[len(self.key) + 1]
            shown = row[-1] if value is not None else None
            shown = None if shown is None else float(shown)
            alert = self.alerts.setdefault(tuple(key.values()), KeyAlert())
            change = Change(
                key=key,
                at=at,
                position=Position(*states.position(i)),
                value=shown,
                reason=self.condition.describe(int(level), shown),
            )
            records += self.reporter.report(alert, change, Position(*states.before(i)))
        return records

    def _remember(self, last: pl.DataFrame) -> None:
        """The keys' new carry: their last observation and where their run stands."""
        keep = [*self.key, TS, LEVEL, *LIFECYCLE_CARRY, *self.condition.carry()]
        if self.condition.value is not None:
            keep.append(self.condition.value)
        last = last.select([c for c in dict.fromkeys(keep) if c in last.columns])
        if self.carry is None or self.carry.height == 0 or not self.key:
            self.carry = last
            return
        kept = self.carry.join(last.select(self.key), on=self.key, how="anti", nulls_equal=True)
        self.carry = pl.concat([kept, last], how="diagonal_relaxed")

    # -- clocks: pending alerts that have held long enough, flapping keys that settled ---------
    def _clocks(self, now: int) -> list[dict[str, Any]]:
        """Pending runs held for ``for`` and flapping keys settled by ``now`` (:meth:`_passed`)."""
        settle = self.reporter.settle
        flapping = [
            key
            for key, alert in self.alerts.items()
            if alert.flapping_since is not None
            and alert.changes
            and alert.changes[-1] + settle <= now
        ]
        if self.carry is None or self.carry.height == 0 or not (self.hold or flapping):
            return []
        due = (
            (pl.col(STATE) == PENDING_)
            & (pl.col(RUN_COUNT) >= self.policy.consecutive)
            & (pl.col(RUN_START) + self.hold <= now)
        ).fill_null(False)
        if not self.hold:
            due = pl.lit(False)
        rows = self.carry.filter(due)
        if flapping and self.key:
            schema = {name: self.carry.schema[name] for name in self.key}
            settling = pl.DataFrame(flapping, schema=schema, orient="row")
            rows = pl.concat(
                [
                    rows,
                    self.carry.join(settling, on=self.key, how="semi", nulls_equal=True).join(
                        rows.select(self.key), on=self.key, how="anti", nulls_equal=True
                    ),
                ]
            )
        elif flapping:
            rows = self.carry
        if rows.height == 0:
            return []
        records: list[dict[str, Any]] = []
        positions: list[int] = []
        for row in rows.iter_rows(named=True):
            key = {name: row[name] for name in self.key}
            alert = self.alerts.setdefault(tuple(key.values()), KeyAlert())
            caught_up, position = self.reporter.catch_up(alert, key, now, _position(row))
            records += caught_up
            positions.append(position.state)
        fresh = rows.with_columns(pl.Series(STATE, positions, pl.Int8))
        kept = (
            self.carry.join(fresh.select(self.key), on=self.key, how="anti", nulls_equal=True)
            if self.key
            else self.carry.clear()
        )
        self.carry = pl.concat([kept, fresh], how="diagonal_relaxed")
        return records

    def _forget(self, now: int, watermark: int | None = None) -> None:
        """Forget idle keys' alerts by ``now`` (:meth:`_passed`), and uncorrectable results.

        ``watermark`` (default ``now``) decides what late readings can still correct.
        """
        watermark = now if watermark is None else watermark
        within = self.reporter.within
        idle = [key for key, alert in self.alerts.items() if alert.idle(now, within)]
        for key in idle:
            del self.alerts[key]
        if self.judged is not None and self.judged.height:
            self.judged = self.judged.filter(pl.col(END).cast(pl.Int64) + self.lateness > watermark)

    # -- output and state ---------------------------------------------------------------------
    def _frame(self, records: list[dict[str, Any]]) -> pl.DataFrame | None:
        if not records:
            return None
        return transitions_frame(records)

    def snapshot(self) -> OperatorState:
        """Held observations, carry, alert bookkeeping, and results still correctable."""
        frames: dict[str, pl.DataFrame] = {}
        for name, frame in (
            ("buffer", self.buffer),
            ("carry", self.carry),
            ("judged", self.judged),
            ("alerts", alerts_frame(self.alerts, self.key, self.carry)),
        ):
            if frame is not None:
                frames[name] = pickled(frame)
        return OperatorState(frames=frames)

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.buffer = state.frames.get("buffer")
        self.carry = state.frames.get("carry")
        if self.carry is not None:
            self.carry = unpickled(self.carry, self.condition.carry())
        self.judged = state.frames.get("judged")
        self.alerts = alerts_of(state.frames.get("alerts"), self.key)


def _position(row: dict[str, Any], prefix: str = "") -> Position:
    """A key's position as one frame row holds it (``__before`` columns: the row before)."""
    state = row[f"{prefix}{STATE}"]
    return Position(
        state=int(state or 0),
        severity=int(row[f"{prefix}{SEVERITY}"] or 0),
        run_start=row[f"{prefix}{RUN_START}"],
        run_count=int(row[f"{prefix}{RUN_COUNT}"] or 0),
    )
