"""Running a rule in one partition: observations in event-time order, judged, turned into alerts.

**Over readings** (or a derive step), a rule holds each observation until the watermark
passes it, then judges the observations of each key in event-time order: disorder within
the out-of-orderness bound changes nothing. An observation arriving behind the watermark is
late for the rule: counted (``late:<rule>``) and kept in the late store, never judged.

**Over window results**, a rule judges each window's result once it is final, in event-time
order (a result's time is its window's last instant). A late reading within the allowed
lateness may then correct a window the rule has already judged. The rule does not rewrite
what it reported: it re-judges the corrected result, and if that result alone would have had
another level, it records a ``correction`` on the key's alert (with the window, the new
value and what the judgment would have been), which the alert store keeps in the alert's
history. A rule declared with ``judge: final`` instead waits until a window can no longer
change (the watermark past its end plus the allowed lateness): no corrections, later alerts.

Keys that nothing can move are left alone: a key with no open alert and no observation its
condition could breach on costs one filter, not a sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

from sensorstream.engine.operator import Operator, OperatorOutput, OperatorState
from sensorstream.engine.outputs import END, FINAL, OP, REVISION, START, UPSERT, WATERMARK
from sensorstream.engine.rules.conditions import CARRIED, Condition
from sensorstream.engine.rules.lifecycle import (
    FLAPPING_SINCE,
    LEVEL,
    LIFECYCLE_CARRY,
    RUN_COUNT,
    RUN_START,
    SEVERITY,
    STATE,
    AlertPolicy,
    Change,
    KeyAlert,
    Position,
    Reporter,
    alert_id,
    changes_only,
    key_text,
    observation_states,
    transitions_frame,
)
from sensorstream.engine.time import micros
from sensorstream.readings import TS

Judge = Literal["on_close", "final"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PENDING, _FIRING = 1, 2


class RuleOperator(Operator):
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
        self.hold = micros(policy.hold)

    # -- taking observations in ---------------------------------------------------------------
    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Hold new observations, judge what the watermark has passed, report the changes."""
        late: pl.Series | None = None
        records: list[dict[str, Any]] = []
        if self.over_results:
            fresh, records = self._results(batch)
        else:
            behind = (pl.col(TS).cast(pl.Int64) <= pl.col(WATERMARK)).fill_null(False)
            late = batch.select(behind.alias("late")).to_series()
            fresh = batch.filter(~late)
        self._hold(fresh)
        records += self._release(watermark_after)
        return OperatorOutput(rows=self._frame(records), late=late)

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Judge what the watermark has now passed, and run the clocks of pending alerts."""
        return OperatorOutput(rows=self._frame(self._release(watermark)))

    def _results(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
        """Final results to judge, and corrections of results already judged."""
        final = batch.filter((pl.col(OP) == UPSERT) & pl.col(FINAL))
        if self.judge == "final" or final.height == 0:
            return final, []
        corrected = final.filter(pl.col(REVISION) > 0)
        if self.judged is None or corrected.height == 0:
            return final, []
        seen = corrected.join(
            self.judged.select(*self.identity, LEVEL),
            on=self.identity,
            how="inner",
            nulls_equal=True,
        )
        fresh = final.join(
            seen.select(self.identity), on=self.identity, how="anti", nulls_equal=True
        )
        return fresh, self._corrections(seen)

    def _hold(self, observations: pl.DataFrame) -> None:
        value = self.condition.value
        if value is not None:
            observations = observations.filter(pl.col(value).is_not_null())
        if observations.height == 0:
            return
        if self.over_results and self.judge == "final" and self.buffer is not None:
            kept = self.buffer.join(
                observations.select(self.identity), on=self.identity, how="anti", nulls_equal=True
            )
            self.buffer = pl.concat([kept, observations], how="diagonal_relaxed")
            return
        self.buffer = (
            observations
            if self.buffer is None
            else pl.concat([self.buffer, observations], how="diagonal_relaxed")
        )

    def _release(self, watermark: int) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        if self.buffer is not None and self.buffer.height:
            if self.over_results and self.judge == "final":
                due = pl.col(END).cast(pl.Int64) + self.lateness <= watermark
            else:
                due = pl.col(TS).cast(pl.Int64) <= watermark
            flags = self.buffer.select(due.alias("due")).to_series()
            if flags.any():
                ready, self.buffer = self.buffer.filter(flags), self.buffer.filter(~flags)
                records += self._judge(ready)
        records += self._clocks(watermark)
        self._forget(watermark)
        return records

    # -- judging ------------------------------------------------------------------------------
    def _judge(self, observations: pl.DataFrame) -> list[dict[str, Any]]:
        """Levels, states and transitions of released observations (any order)."""
        active = self._active(observations)
        if active.height == 0:
            return []
        carry_columns = {**self.condition.carry(), **LIFECYCLE_CARRY, LEVEL: pl.Int8()}
        rows = active.with_columns(pl.lit(False).alias(CARRIED))
        rows = rows.with_columns(
            pl.lit(None, kind).alias(name) for name, kind in carry_columns.items()
        )
        frames = [rows]
        if self.carry is not None and self.carry.height:
            keys = rows.select(self.key).unique() if self.key else None
            carried = (
                self.carry
                if keys is None
                else self.carry.join(keys, on=self.key, how="semi", nulls_equal=True)
            )
            frames.insert(0, carried.with_columns(pl.lit(True).alias(CARRIED)))
        frame = pl.concat(frames, how="diagonal_relaxed")
        order = [*self.key, CARRIED, TS]
        frame = frame.sort(
            order,
            descending=[False] * len(self.key) + [True, False],
            maintain_order=True,
            nulls_last=True,
        )
        frame = self.condition.level(frame, self.key)
        frame = observation_states(frame, self.key, self.policy)
        records, alerts = self._changes(frame)
        # A key's alert bookkeeping lives on its carried row: keep it on its last row too.
        kept = [pl.col(name).forward_fill() for name in alert_columns()]
        frame = frame.with_columns(e.over(self.key) if self.key else e for e in kept)
        last = frame.group_by(self.key, maintain_order=True).last() if self.key else frame.tail(1)
        self._remember(last, alerts)
        if self.over_results and self.judge == "on_close":
            judged = frame.filter(~pl.col(CARRIED)).select(*self.identity, END, LEVEL)
            self.judged = (
                judged
                if self.judged is None
                else pl.concat([self.judged, judged], how="diagonal_relaxed")
            )
        return records

    def _active(self, observations: pl.DataFrame) -> pl.DataFrame:
        """The observations of keys that could change: a candidate row, or something open."""
        candidates = self.condition.candidates()
        if candidates is None or not self.key:
            return observations
        keys = observations.filter(candidates.fill_null(False)).select(self.key).unique()
        if self.carry is not None and self.carry.height:
            open_ = (
                (pl.col(STATE) != 0)
                | pl.col(LEVEL).fill_null(0).gt(0)
                | pl.col(FLAPPING_SINCE).is_not_null()
            )
            keys = pl.concat(
                [keys, self.carry.filter(open_).select(self.key)], how="vertical_relaxed"
            ).unique()
        if keys.height == 0:
            return observations.clear()
        return observations.join(keys, on=self.key, how="semi", nulls_equal=True)

    def _changes(
        self, frame: pl.DataFrame
    ) -> tuple[list[dict[str, Any]], dict[tuple[Any, ...], KeyAlert]]:
        """Transitions of the observations whose state or severity changed."""
        previous = [
            (pl.col(name).shift(1).over(self.key) if self.key else pl.col(name).shift(1)).alias(
                f"__before{name}"
            )
            for name in (STATE, SEVERITY, RUN_START, RUN_COUNT)
        ]
        changes = changes_only(frame.with_columns(previous), self.key)
        if changes.height == 0:
            return [], {}
        value = self.condition.value
        records: list[dict[str, Any]] = []
        alerts = self._alerts(changes)
        for row in changes.iter_rows(named=True):
            key = {name: row[name] for name in self.key}
            alert = alerts[tuple(key.values())]
            shown = float(row[value]) if value is not None and row[value] is not None else None
            change = Change(
                key=key,
                at=_micros_of(row[TS]),
                position=_position(row),
                value=shown,
                reason=self.condition.describe(int(row[LEVEL]), shown),
            )
            records += self.reporter.report(alert, change, _position(row, "__before"))
        return records, alerts

    def _alerts(self, changes: pl.DataFrame) -> dict[tuple[Any, ...], KeyAlert]:
        """Each changed key's alert bookkeeping, from the carry."""
        keys = changes.select(self.key).unique() if self.key else None
        found: dict[tuple[Any, ...], KeyAlert] = {}
        if self.carry is not None and self.carry.height:
            rows = (
                self.carry
                if keys is None
                else self.carry.join(keys, on=self.key, how="semi", nulls_equal=True)
            )
            for named in rows.iter_rows(named=True):
                found[tuple(named[name] for name in self.key)] = KeyAlert.of(named)
        values: list[tuple[Any, ...]] = list(keys.iter_rows()) if keys is not None else [()]
        for value in values:
            found.setdefault(tuple(value), KeyAlert())
        return found

    def _remember(self, last: pl.DataFrame, alerts: dict[tuple[Any, ...], KeyAlert]) -> None:
        """The keys' new carry: their last observation, with the alert bookkeeping updated."""
        if alerts and self.key:
            schema = {name: last.schema[name] for name in self.key}
            schema |= {name: LIFECYCLE_CARRY[name] for name in alert_columns()}
            updates = pl.DataFrame(
                [
                    {**dict(zip(self.key, key, strict=True)), **alert.columns()}
                    for key, alert in alerts.items()
                ],
                schema=schema,
                orient="row",
            )
            changed = last.join(updates.select(self.key), on=self.key, how="semi", nulls_equal=True)
            unchanged = last.join(
                updates.select(self.key), on=self.key, how="anti", nulls_equal=True
            )
            changed = changed.drop(alert_columns()).join(updates, on=self.key, nulls_equal=True)
            last = pl.concat([unchanged, changed.select(last.columns)], how="vertical_relaxed")
        elif alerts:
            [only] = alerts.values()
            last = last.with_columns(
                pl.lit(value, LIFECYCLE_CARRY[name]).alias(name)
                for name, value in only.columns().items()
            )
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
    def _clocks(self, watermark: int) -> list[dict[str, Any]]:
        if self.carry is None or self.carry.height == 0:
            return []
        due_pending = (
            (
                (pl.col(STATE) == _PENDING)
                & (pl.col(RUN_COUNT) >= self.policy.consecutive)
                & (pl.col(RUN_START) + self.hold <= watermark)
            )
            if self.hold
            else pl.lit(False)
        )
        flapping = pl.col(FLAPPING_SINCE).is_not_null()
        due = self.carry.filter((due_pending | flapping).fill_null(False))
        if due.height == 0:
            return []
        records: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        for row in due.iter_rows(named=True):
            key = {name: row[name] for name in self.key}
            alert = KeyAlert.of(row)
            caught_up, position = self.reporter.catch_up(alert, key, watermark, _position(row))
            records += caught_up
            updated.append({**row, **alert.columns(), STATE: position.state})
        fresh = pl.DataFrame(updated, schema=self.carry.schema, orient="row")
        kept = (
            self.carry.join(fresh.select(self.key), on=self.key, how="anti", nulls_equal=True)
            if self.key
            else self.carry.clear()
        )
        self.carry = pl.concat([kept, fresh], how="diagonal_relaxed")
        return records

    def _forget(self, watermark: int) -> None:
        """Judged results that can no longer be corrected are forgotten."""
        if self.judged is not None and self.judged.height:
            self.judged = self.judged.filter(pl.col(END).cast(pl.Int64) + self.lateness > watermark)

    # -- corrections of results already judged ------------------------------------------------
    def _corrections(self, seen: pl.DataFrame) -> list[dict[str, Any]]:
        """A correction record for each corrected result whose level alone would differ."""
        judged_level = seen[LEVEL]
        frame = seen.drop(LEVEL).with_columns(pl.lit(False).alias(CARRIED))
        frame = frame.with_columns(
            pl.lit(None, kind).alias(name) for name, kind in self.condition.carry().items()
        )
        frame = frame.with_columns(pl.lit(None, pl.Int8).alias(LEVEL))
        levels = self.condition.level(frame, []).get_column(LEVEL)
        records: list[dict[str, Any]] = []
        value = self.condition.value
        names = self.condition.severities
        for row, before, after in zip(
            frame.iter_rows(named=True), judged_level, levels, strict=True
        ):
            if int(after) == int(before):
                continue
            key = {name: row[name] for name in self.key}
            text = key_text(key)
            start = _micros_of(row[START])
            shown = row[value] if value is not None else None
            would = names[int(after) - 1] if after else "ok"
            was = names[int(before) - 1] if before else "ok"
            ident = alert_id(self.name, text, start)
            records.append(
                {
                    "transition_id": f"{ident}-r{row[REVISION]}",
                    "alert_id": ident,
                    "rule": self.name,
                    "key": text,
                    "state": "correction",
                    "previous_state": was,
                    "severity": None if not after else names[int(after) - 1],
                    "event_time": _micros_of(row[TS]),
                    "started_at": start,
                    "value": None if shown is None else float(shown),
                    "reason": (
                        f"the window from {row[START]:%H:%M:%S} was corrected by late readings "
                        f"(revision {row[REVISION]}): judged {was}, it would now be {would}"
                    ),
                    "sequence": int(row[REVISION]),
                    "kind": "correction",
                }
            )
        return records

    # -- output and state ---------------------------------------------------------------------
    def _frame(self, records: list[dict[str, Any]]) -> pl.DataFrame | None:
        if not records:
            return None
        return transitions_frame(records)

    def snapshot(self) -> OperatorState:
        """Held observations, each key's carry, and the judged results still correctable."""
        frames: dict[str, pl.DataFrame] = {}
        for name, frame in (
            ("buffer", self.buffer),
            ("carry", self.carry),
            ("judged", self.judged),
        ):
            if frame is not None:
                frames[name] = frame
        return OperatorState(frames=frames)

    def restore(self, state: OperatorState) -> None:
        """Continue from :meth:`snapshot`."""
        self.buffer = state.frames.get("buffer")
        self.carry = state.frames.get("carry")
        self.judged = state.frames.get("judged")


def _position(row: dict[str, Any], prefix: str = "") -> Position:
    """A key's position as one frame row holds it (``__before`` columns: the row before)."""
    state = row[f"{prefix}{STATE}"]
    return Position(
        state=int(state or 0),
        severity=int(row[f"{prefix}{SEVERITY}"] or 0),
        run_start=row[f"{prefix}{RUN_START}"],
        run_count=int(row[f"{prefix}{RUN_COUNT}"] or 0),
    )


def alert_columns() -> list[str]:
    """The carried columns the loop over changes owns."""
    return [name for name in LIFECYCLE_CARRY if name not in (RUN_START, RUN_COUNT, STATE, SEVERITY)]


def _micros_of(moment: datetime | int) -> int:
    """A timestamp (datetime or int) as microseconds since the epoch."""
    if isinstance(moment, int):
        return moment
    return (moment - _EPOCH) // timedelta(microseconds=1)
