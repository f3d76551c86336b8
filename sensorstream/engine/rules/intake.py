"""How a rule takes observations in: late, held or due, and the keys that could change.

Over readings, :meth:`Intake._intake` sorts a batch in one pass: readings behind their own
watermark are late for the rule, readings the new watermark has not passed are held in the
buffer, and of the rest only the keys that could change (a candidate breach, or an alert or
run under way) go on to be judged. Over window results, :meth:`Intake._results` takes the
final results, and turns results of windows already judged (corrected by late readings, or
opened by them after later windows were judged) into corrections instead
(:mod:`.corrections`). The judging itself is :class:`~.operator.RuleOperator`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import polars as pl

from sensorstream.engine.outputs import END, FINAL, OP, OPENED_LATE, REVISION, UPSERT, WATERMARK
from sensorstream.engine.rules.conditions import Condition
from sensorstream.engine.rules.corrections import corrections
from sensorstream.engine.rules.lifecycle import KeyAlert
from sensorstream.engine.rules.states import LEVEL, STATE
from sensorstream.engine.watermarks import MAX_WATERMARK
from sensorstream.readings import TS

Judge = Literal["on_close", "final"]
_HASH = "__key_hash"


class Intake:
    """The intake half of a rule's operator: the buffer, and what a release judges."""

    name: str
    condition: Condition
    key: list[str]
    over_results: bool
    identity: list[str]
    lateness: int
    judge: Judge
    buffer: pl.DataFrame | None  # held until released in event time
    carry: pl.DataFrame | None  # one row per key: where it stands
    judged: pl.DataFrame | None  # recent judged results, for corrections
    alerts: dict[tuple[Any, ...], KeyAlert]  # keys with something to remember

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
            columns += [candidates.fill_null(False).alias("candidate"), key_hash(self.key)]
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
                    key_hash(self.key), candidates.fill_null(False).alias("candidate")
                )
                wanted.append(flagged.filter(pl.col("candidate")).get_column(_HASH))
            wanted += self._under_way()
            keys = pl.concat(wanted).unique()
            arrived = arrived & hashes.is_in(keys.implode())
            if earlier is not None and earlier.height:
                earlier = earlier.filter(key_hash(self.key).is_in(keys.implode()))
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
        return [self.carry.filter(under_way).select(key_hash(self.key)).to_series()]

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
                records = corrections(self.name, self.condition, self.key, opened, self.alerts)
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
        return fresh, records + corrections(self.name, self.condition, self.key, seen, self.alerts)

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

    def _passed(self, watermark: int) -> int:
        """How far event time has passed for the rule's clocks at ``watermark``.

        The clocks (a pending run's ``for``, a flapping key's settling, a deadman's silences,
        forgetting idle keys) may only run as far as every observation before them has been
        judged, or a result judged later would land before a change already reported. Under
        ``judge: final`` a result not yet due (:meth:`_split`) can still be at ``watermark -
        lateness`` (its window's last instant), so time has passed only that far; otherwise
        the watermark itself. The end of input closes everything.
        """
        if self.over_results and self.judge == "final" and watermark < MAX_WATERMARK:
            return watermark - self.lateness
        return watermark

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


def key_hash(key: Sequence[str]) -> pl.Expr:
    """A 64-bit hash of a key's values (deterministic within a process)."""
    if len(key) == 1:
        return pl.col(key[0]).hash().alias(_HASH)
    return pl.struct(list(key)).hash().alias(_HASH)
