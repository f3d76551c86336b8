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


# Chunks of the seen-set before they are merged into one: each batch adds one, so this
# bounds the per-batch bookkeeping while merging stays rare.
MAX_CHUNKS = 64


@dataclass
class _Chunk:
    """Entries of the seen-set added together, sorted by event time, and their range."""

    low: int
    high: int
    entries: pl.DataFrame

    @classmethod
    def of(cls, entries: pl.DataFrame) -> _Chunk:
        entries = entries.sort("ts")
        low, high = entries["ts"][0], entries["ts"][-1]
        return cls(int(low), int(high), entries)

    def between(self, low: int, high: int) -> pl.DataFrame:
        """The entries with ``low <= ts <= high`` (a slice: the chunk is sorted)."""
        ts = self.entries["ts"]
        start = int(ts.search_sorted(low, "left"))
        end = int(ts.search_sorted(high, "right"))
        return self.entries.slice(start, end - start)


@dataclass
class Deduplicator:
    """The seen-set of one partition.

    It is kept as chunks sorted by time, with their ranges (one per batch; the older half
    merged into one when there are many), so that a batch probes a slice of each chunk its
    own time range overlaps and eviction cuts slices too: a batch's cost follows its own
    size, not the readings of a whole horizon.
    """

    key_columns: Sequence[str]
    horizon_us: int
    _chunks: list[_Chunk] = field(default_factory=list)

    @property
    def seen(self) -> pl.DataFrame:
        """Every entry of the seen-set (hash, ts)."""
        if not self._chunks:
            return pl.DataFrame(schema=_SEEN_SCHEMA)
        return pl.concat([chunk.entries for chunk in self._chunks])

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
        # range can match: probing those chunks instead of the whole horizon keeps it cheap.
        # Within the batch, an ineligible row never precedes an eligible identical one (same
        # time, watermark only grows), so plain first-occurrence marking is exact.
        low, high = int(keyed["ts"].min()), int(keyed["ts"].max())  # type: ignore[arg-type]
        overlapping = [
            c.between(low, high)["hash"] for c in self._chunks if c.low <= high and c.high >= low
        ]
        candidates = pl.concat(overlapping) if overlapping else pl.Series("hash", [], pl.UInt64)
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
            self._add(new_entries)
        return duplicate.alias("duplicate")

    def _add(self, entries: pl.DataFrame) -> None:
        self._chunks.append(_Chunk.of(entries))
        if len(self._chunks) > MAX_CHUNKS:  # merge the older half: new batches rarely probe it
            half = len(self._chunks) // 2
            older = pl.concat([c.entries for c in self._chunks[:half]])
            self._chunks = [_Chunk.of(older), *self._chunks[half:]]

    def evict(self, watermark: int) -> None:
        """Forget entries that can no longer match: older than the horizon."""
        cutoff = watermark - self.horizon_us
        kept: list[_Chunk] = []
        for chunk in self._chunks:
            if chunk.high < cutoff:
                continue  # wholly too old
            if chunk.low < cutoff:
                entries = chunk.between(cutoff, chunk.high)  # still sorted
                chunk = _Chunk(int(entries["ts"][0]), chunk.high, entries)
            kept.append(chunk)
        self._chunks = kept

    def snapshot(self) -> pl.DataFrame:
        """The seen-set."""
        return self.seen

    def restore(self, seen: pl.DataFrame) -> None:
        """Continue from :meth:`snapshot`."""
        entries = seen.cast(_SEEN_SCHEMA)  # type: ignore[arg-type]
        self._chunks = []
        if entries.height:
            self._add(entries)
