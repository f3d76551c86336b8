"""Deduplication of exact repeats (same device, time and values, or same message id).

A reading is a duplicate if an identical one was seen before and its event time is within
``horizon`` of the watermark that held before it. Older readings are never judged
duplicates, which is what lets the seen-set drop entries older than the horizon: memory is
bounded by the readings of one horizon, not by all readings ever seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from sensorstream.engine.operator import WATERMARK

_HASH_SEED = 0x5E5C0DE
_SEEN_SCHEMA = {"hash": pl.UInt64, "ts": pl.Int64}


@dataclass
class Deduplicator:
    """The seen-set of one partition."""

    key_columns: Sequence[str]
    horizon_us: int
    seen: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_SEEN_SCHEMA))

    def split(self, batch: pl.DataFrame) -> pl.Series:
        """Mark duplicates in a batch annotated with watermarks; remember the rest."""
        if batch.height == 0:
            return pl.Series("duplicate", [], pl.Boolean)
        ts = pl.col("ts").cast(pl.Int64)
        keyed = batch.select(
            pl.struct(list(self.key_columns)).hash(_HASH_SEED).alias("hash"),
            ts.alias("ts"),
            (ts >= pl.col(WATERMARK) - self.horizon_us).alias("eligible"),
        )
        # A repeat has the same event time, so only seen entries inside the batch's time
        # range can match: probing that slice instead of the whole horizon keeps it cheap.
        # Within the batch, an ineligible row never precedes an eligible identical one (same
        # time, watermark only grows), so plain first-occurrence marking is exact.
        low, high = keyed["ts"].min(), keyed["ts"].max()
        candidates = self.seen.filter(pl.col("ts").is_between(low, high))["hash"]
        probe = pl.concat([candidates, keyed["hash"]])
        if probe.n_unique() == probe.len():
            # The usual case: nothing repeats, so one cheap count settles the whole batch.
            duplicate = pl.repeat(False, keyed.height, eager=True)
        else:
            # Seen entries come first, so a row repeating one of them, or an earlier row of
            # the batch, is not the first of its kind.
            first = probe.is_first_distinct().slice(candidates.len())
            duplicate = keyed["eligible"] & ~first
        new_entries = keyed.filter(keyed["eligible"] & ~duplicate).select("hash", "ts")
        if new_entries.height:
            self.seen = pl.concat([self.seen, new_entries])
        return duplicate.alias("duplicate")

    def evict(self, watermark: int) -> None:
        """Forget entries that can no longer match: older than the horizon."""
        if self.seen.height:
            self.seen = self.seen.filter(pl.col("ts") >= watermark - self.horizon_us)

    def snapshot(self) -> pl.DataFrame:
        """The seen-set."""
        return self.seen

    def restore(self, seen: pl.DataFrame) -> None:
        """Continue from :meth:`snapshot`."""
        self.seen = seen.cast(_SEEN_SCHEMA)  # type: ignore[arg-type]
