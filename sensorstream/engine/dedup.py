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
class _Entries:
    """The seen entries one batch added, with their event-time range for quick skipping."""

    low: int
    high: int
    frame: pl.DataFrame


@dataclass
class Deduplicator:
    """The seen-set of one partition, kept as one block of entries per batch.

    Readings arrive roughly in time order, so a batch's blocks cover narrow time ranges:
    probing skips blocks outside the batch's range, and eviction drops whole blocks,
    filtering only the one that straddles the horizon.
    """

    key_columns: Sequence[str]
    horizon_us: int
    blocks: list[_Entries] = field(default_factory=list)

    @property
    def seen(self) -> pl.DataFrame:
        """Every remembered entry: its hash and event time."""
        frames = [block.frame for block in self.blocks]
        return pl.concat(frames) if frames else pl.DataFrame(schema=_SEEN_SCHEMA)

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
        low, high = _time_range(keyed)
        candidates = pl.concat(
            [
                pl.Series("hash", [], pl.UInt64),
                *(
                    block.frame.filter(pl.col("ts").is_between(low, high))["hash"]
                    for block in self.blocks
                    if block.high >= low and block.low <= high
                ),
            ]
        )
        probe = pl.concat([candidates, keyed["hash"]])
        if probe.n_unique() == probe.len():
            # The usual case: nothing repeats, so one cheap count settles the whole batch.
            duplicate = pl.repeat(False, keyed.height, eager=True)
        else:
            # Seen entries come first, so a row repeating one of them, or an earlier row of
            # the batch, is not the first of its kind.
            first = probe.is_first_distinct().slice(candidates.len())
            duplicate = keyed["eligible"] & ~first
        new_entries = keyed.filter(pl.col("eligible") & ~duplicate).select("hash", "ts")
        self._remember(new_entries)
        return duplicate.alias("duplicate")

    def _remember(self, entries: pl.DataFrame) -> None:
        if entries.height:
            self.blocks.append(_Entries(*_time_range(entries), entries))

    def evict(self, watermark: int) -> None:
        """Forget entries that can no longer match: older than the horizon."""
        cutoff = watermark - self.horizon_us
        kept: list[_Entries] = []
        for block in self.blocks:
            if block.high < cutoff:
                continue
            if block.low < cutoff:
                frame = block.frame.filter(pl.col("ts") >= cutoff)
                block = _Entries(cutoff, block.high, frame)
            kept.append(block)
        self.blocks = kept

    def snapshot(self) -> pl.DataFrame:
        """The seen-set."""
        return self.seen

    def restore(self, seen: pl.DataFrame) -> None:
        """Continue from :meth:`snapshot`."""
        self.blocks = []
        self._remember(seen.cast(_SEEN_SCHEMA))  # type: ignore[arg-type]


def _time_range(frame: pl.DataFrame) -> tuple[int, int]:
    """The earliest and latest event time of a non-empty frame with an Int64 ``ts``."""
    low, high = frame.select(pl.col("ts").min().alias("low"), pl.col("ts").max().alias("high")).row(
        0
    )
    return int(low), int(high)
