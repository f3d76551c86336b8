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

**Time alone** can make observations (a deadman's silences, :mod:`.deadman`): each release
asks the condition for them up to the watermark, and keys no observation reached are woken
when the condition says time is due for them. A processing-time deadman is judged on the
ticks instead (:mod:`.ticked`). Conditions without a clock (threshold, when...) skip both
at the cost of one attribute test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

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
    UPSERT,
    WATERMARK,
)
from sensorstream.engine.rules.conditions import CARRIED, Condition
from sensorstream.engine.rules.corrections import corrections
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

Judge = Literal["on_close", "final"]
_HASH = "__key_hash"


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
        self.alerts: dict[tuple[Any, ...], KeyAlert] = {}  # keys with something to remember
        self.hold = micros(policy.hold)
        self.timed = condition.timer is not None  # time alone makes observations
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

    def _intake(self, batch: pl.DataFrame, watermark: int) -> tuple[pl.Series, pl.DataFrame | None]:
        """Readings in, in one pass over the batch: which are late, and which are due now.

        A reading behind its own watermark is late for the rule; one the new watermark has
        not passed is held; of the rest, only the keys that could change are judged
        (:meth:`_active`, here folded into the same pass). Returns the late flags and
        the observations to judge now (the held ones now due among them).
        """
        value = self.condition.value
        ts = pl.col(TS).cast(pl.Int64)
        keep = ~(ts <= pl.col(WATERMARK)).fill_null(False)
        if value is not None:
            keep = keep & pl.col(value).is_not_null()  # a null value says nothing
        candidates = self.condition.candidates()
        columns = [
            (ts <= pl.col(WATERMARK)).fill_null(False).alias("late"),
            keep.alias("keep"),
            (ts <= watermark).alias("due"),
        ]
        if candidates is not None and self.key:
            columns += [candidates.fill_null(False).alias("candidate"), _key_hash(self.key)]
        flags = batch.select(columns)
        late, kept, due = (
            flags.get_column("late"),
            flags.get_column("keep"),
            flags.get_column("due"),
        )
        self._hold(self._filtered(batch, kept & ~due))
        earlier = self._due(watermark)
        arrived = kept & due
        if candidates is not None and self.key:
            hashes = flags.get_column(_HASH)
            wanted = [hashes.filter(arrived & flags.get_column("candidate"))]
            if earlier is not None and earlier.height:
                flagged = earlier.select(
                    _key_hash(self.key), candidates.fill_null(False).alias("candidate")
                )
                wanted.append(flagged.filter(pl.col("candidate")).get_column(_HASH))
            wanted += self._under_way()
            keys = pl.concat(wanted).unique()
            arrived = arrived & hashes.is_in(keys.implode())
            if earlier is not None and earlier.height:
                earlier = earlier.filter(_key_hash(self.key).is_in(keys.implode()))
        now = self._filtered(batch, arrived)
        if earlier is None or earlier.height == 0:
            return late, now
        if now is None:
            return late, earlier
        return late, pl.concat([earlier, now], how="diagonal_relaxed")

    @staticmethod
    def _filtered(frame: pl.DataFrame, mask: pl.Series) -> pl.DataFrame | None:
        """The rows of ``frame`` the mask holds for; None if none, ``frame`` if all."""
        if not mask.any():
            return None
        return frame if mask.all() else frame.filter(mask)

    def _under_way(self) -> list[pl.Series]:
        """The key hashes of carried keys with an alert or a breach run under way."""
        if self.carry is None or self.carry.height == 0:
            return []
        under_way = (pl.col(STATE) != 0) | pl.col(LEVEL).fill_null(0).gt(0)
        return [self.carry.filter(under_way).select(_key_hash(self.key)).to_series()]

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """Judge what the watermark has now passed, and run the clocks of pending alerts."""
        return OperatorOutput(rows=self._frame(self._release(self._due(watermark), watermark)))

    def _due(self, watermark: int) -> pl.DataFrame | None:
        """The held observations the watermark has now passed, taken out of the buffer."""
        if self.buffer is None:
            return None
        due, self.buffer = self._split(self.buffer, watermark)
        return due

    def _results(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
        """Final results to judge, and corrections of results already judged.

        A window that late readings opened after its end (:data:`OPENED_LATE`) reaches the
        rule after later windows of its key were judged, in any batching; it is taken like a
        correction of a window judged ok (nothing was there to judge), never judged in
        sequence, so the alerts do not depend on how the input was batched.
        """
        final = batch.filter((pl.col(OP) == UPSERT) & pl.col(FINAL))
        if self.judge == "final" or final.height == 0:
            return final, []
        records: list[dict[str, Any]] = []
        if OPENED_LATE in final.columns:
            opened = final.filter(pl.col(OPENED_LATE) & (pl.col(REVISION) == 0))
            if opened.height:
                final = final.filter(~(pl.col(OPENED_LATE) & (pl.col(REVISION) == 0)))
                opened = self._observed(opened).with_columns(pl.lit(0, pl.Int8).alias(LEVEL))
                records = corrections(self.name, self.condition, self.key, opened)
                self._note_judged(opened)
        corrected = final.filter(pl.col(REVISION) > 0)
        if self.judged is None or corrected.height == 0:
            return final, records
        seen = corrected.join(
            self.judged.select(*self.identity, LEVEL),
            on=self.identity,
            how="inner",
            nulls_equal=True,
        )
        fresh = final.join(
            seen.select(self.identity), on=self.identity, how="anti", nulls_equal=True
        )
        return fresh, records + corrections(self.name, self.condition, self.key, seen)

    def _note_judged(self, judged: pl.DataFrame) -> None:
        """Remember the levels of judged results, to tell whether a correction changes one."""
        judged = judged.select(*self.identity, END, LEVEL)
        if self.judged is not None:
            judged = pl.concat([self.judged, judged], how="diagonal_relaxed")
        self.judged = judged

    def _observed(self, observations: pl.DataFrame) -> pl.DataFrame:
        """The observations with a value to judge (a null value says nothing)."""
        value = self.condition.value
        if value is None or observations.height == 0:
            return observations
        present = observations.get_column(value).is_not_null()
        return observations if present.all() else observations.filter(present)

    def _split(
        self, observations: pl.DataFrame, watermark: int
    ) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
        """Observations the watermark has passed (to judge now), and the rest (held).

        Under ``judge: final`` a result is due once its window can no longer change.
        """
        if observations.height == 0:
            return None, None
        if self.over_results and self.judge == "final":
            due = pl.col(END).cast(pl.Int64) + self.lateness <= watermark
        else:
            due = pl.col(TS).cast(pl.Int64) <= watermark
        flags = observations.select(due.alias("due")).to_series()
        if flags.all():
            return observations, None
        if not flags.any():
            return None, observations
        return observations.filter(flags), observations.filter(~flags)

    def _hold(self, observations: pl.DataFrame | None) -> None:
        """Keep observations the watermark has not passed; a result replaces its earlier self."""
        if observations is None or observations.height == 0:
            return
        if self.buffer is None or self.buffer.height == 0:
            self.buffer = observations
            return
        kept = self.buffer
        if self.over_results and self.judge == "final":
            kept = kept.join(
                observations.select(self.identity), on=self.identity, how="anti", nulls_equal=True
            )
        self.buffer = pl.concat([kept, observations], how="diagonal_relaxed")

    def _release(
        self, due: pl.DataFrame | None, watermark: int, *, active: bool = False
    ) -> list[dict[str, Any]]:
        """Judge the observations now due, then run the clocks up to the watermark.

        ``active``: ``due`` holds only the keys that could change (:meth:`_active` done).
        """
        records: list[dict[str, Any]] = []
        now = watermark if watermark < MAX_WATERMARK else None  # the end is no passing time
        if due is not None and due.height:
            records += self._judge(due, now, active=active)
        if self.timed:
            records += self._wake(now)
        records += self._clocks(watermark)
        self._forget(watermark)
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
        frame = self.condition.level(frame, self.key)
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
        hashed = _key_hash(self.key)
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
    def _clocks(self, watermark: int) -> list[dict[str, Any]]:
        """Pending runs that have now held for ``for``, and flapping keys due to settle."""
        settle = self.reporter.settle
        flapping = [
            key
            for key, alert in self.alerts.items()
            if alert.flapping_since is not None
            and alert.changes
            and alert.changes[-1] + settle <= watermark
        ]
        if self.carry is None or self.carry.height == 0 or not (self.hold or flapping):
            return []
        due = (
            (pl.col(STATE) == PENDING_)
            & (pl.col(RUN_COUNT) >= self.policy.consecutive)
            & (pl.col(RUN_START) + self.hold <= watermark)
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
            caught_up, position = self.reporter.catch_up(alert, key, watermark, _position(row))
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

    def _forget(self, watermark: int) -> None:
        """Forget judged results that can no longer be corrected, and idle keys' alerts."""
        within = self.reporter.within
        idle = [key for key, alert in self.alerts.items() if alert.idle(watermark, within)]
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


def _key_hash(key: Sequence[str]) -> pl.Expr:
    """A 64-bit hash of a key's values (deterministic within a process)."""
    if len(key) == 1:
        return pl.col(key[0]).hash().alias(_HASH)
    return pl.struct(list(key)).hash().alias(_HASH)
