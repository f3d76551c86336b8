"""Event-time progress per partition: watermarks, out-of-orderness and idleness.

The watermark is the largest event time seen minus the out-of-orderness bound; it never
moves backwards. Each reading is judged against the watermark that held *before* it
(a shifted running maximum), so a batch's split into smaller batches changes nothing.
If a partition stays silent for ``idle_timeout`` of processing time, its watermark follows
the processing clock from the last event time seen, so its last windows still close.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from sensorstream.engine.operator import WATERMARK

MIN_WATERMARK = -(2**62)
MAX_WATERMARK = 2**62


@dataclass
class WatermarkTracker:
    """Watermark state of one partition; all times are microseconds since the epoch."""

    out_of_orderness_us: int
    idle_timeout_us: int | None = None
    watermark: int = MIN_WATERMARK
    max_event: int | None = None
    last_arrival: int | None = None

    def annotate(self, batch: pl.DataFrame, now_us: int) -> pl.DataFrame:
        """Add each row's watermark-before column and advance past the batch."""
        if batch.height == 0:
            return batch.with_columns(pl.lit(self.watermark, pl.Int64).alias(WATERMARK))
        ts = pl.col("ts").cast(pl.Int64)
        before = pl.max_horizontal(
            pl.lit(self.watermark, pl.Int64),
            ts.cum_max().shift(1, fill_value=MIN_WATERMARK + self.out_of_orderness_us)
            - self.out_of_orderness_us,
        )
        annotated = batch.with_columns(before.alias(WATERMARK))
        batch_max = int(batch["ts"].cast(pl.Int64).max())  # type: ignore[arg-type]
        self.max_event = batch_max if self.max_event is None else max(self.max_event, batch_max)
        self.watermark = max(self.watermark, self.max_event - self.out_of_orderness_us)
        self.last_arrival = now_us
        return annotated

    def tick(self, now_us: int) -> bool:
        """Advance an idle partition's watermark with processing time; True if it moved."""
        if self.idle_timeout_us is None or self.max_event is None:
            return False
        if self.last_arrival is None:  # just restored: the silence starts now, not at the crash
            self.last_arrival = now_us
            return False
        silent = now_us - self.last_arrival
        if silent < self.idle_timeout_us:
            return False
        candidate = self.max_event - self.out_of_orderness_us + silent
        if candidate <= self.watermark:
            return False
        self.watermark = candidate
        return True

    def close(self) -> None:
        """End of input: every window may close."""
        self.watermark = MAX_WATERMARK

    def snapshot(self) -> dict[str, int | None]:
        """The tracker's state as JSON-ready numbers."""
        return {
            "watermark": self.watermark,
            "max_event": self.max_event,
            "last_arrival": self.last_arrival,
        }

    def restore(self, state: dict[str, int | None]) -> None:
        """Continue from :meth:`snapshot`."""
        watermark = state["watermark"]
        # Not `or`: a watermark of exactly 0 (the epoch) is a real watermark.
        self.watermark = MIN_WATERMARK if watermark is None else int(watermark)
        self.max_event = state["max_event"]
        self.last_arrival = None
