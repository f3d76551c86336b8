"""How much of the ingest log the pipeline has not checkpointed, and when there will be room.

The log is bounded by the bytes after the *consumed point*: the last line the pipeline has
checkpointed (:meth:`~sensorstream.sources.ingest_log.IngestLog.compact`). To count those
bytes without an index of every record, the log keeps *marks*: a segment's start, and a
place every 64 KiB of appends, each a sequence number with its byte offset. The consumed
point is the last mark at or before the checkpointed line, so the count errs by at most
64 KiB, on the safe side. When a body does not fit, :class:`Backpressure` suggests a retry
after the time the pipeline has lately taken to consume that much.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import timedelta

from sensorstream.sources.ingest_records import MARK_EVERY, IngestLogError, Point, Segment

# Until the pipeline has consumed something twice, nothing says how fast it frees room: a
# checkpoint interval (5 s by default) is how often it does.
DEFAULT_RETRY_AFTER = timedelta(seconds=5)
_MAX_RETRY_AFTER = timedelta(seconds=60)


class Backpressure(IngestLogError):
    """The log holds ``max_unconsumed_bytes`` the pipeline has not checkpointed yet: retry later.

    ``retry_after`` estimates when there will be room, from how fast the pipeline has been
    consuming.
    """

    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Room:
    """The consumed point, the marks after it, and the recent rate of consumption.

    Not thread-safe: the log calls it under its lock.
    """

    def __init__(self, limit: int, marks: list[Point], monotonic: Callable[[], float]) -> None:
        self.limit = limit
        self.marks = marks  # in order; the first is the consumed point
        self.consumed = marks[0]
        self._monotonic = monotonic
        self._rate: float | None = None  # consumed bytes a second, smoothed
        self._last: tuple[float, int] | None = None  # (time, bytes consumed so far)
        self._consumed_total = 0

    def held(self, segments: Sequence[Segment]) -> int:
        """Bytes after the consumed point."""
        held = 0
        for segment in segments:
            if segment.first == self.consumed.segment:
                held += segment.size - self.consumed.offset
            elif segment.first > self.consumed.segment:
                held += segment.size
        return held

    def check(self, segments: Sequence[Segment], size: int) -> None:
        """Raise :class:`Backpressure` if a record of ``size`` bytes does not fit now.

        A log holding nothing unconsumed takes any record within the limit, so one large
        body can never wait forever.
        """
        if size > self.limit:
            msg = (
                f"a record of {size} bytes is larger than the ingest log's room ({self.limit} "
                "bytes): raise max_unconsumed_bytes"
            )
            raise IngestLogError(msg)
        held = self.held(segments)
        excess = held + size - self.limit
        if excess <= 0 or held == 0:
            return
        if self._rate:
            wait = timedelta(seconds=math.ceil(excess / self._rate))
            retry_after = min(_MAX_RETRY_AFTER, max(timedelta(seconds=1), wait))
        else:
            retry_after = DEFAULT_RETRY_AFTER
        msg = (
            f"the ingest log holds {held} bytes the pipeline has not checkpointed yet (room: "
            f"{self.limit}): retry after {retry_after.total_seconds():.0f} s"
        )
        raise Backpressure(msg, retry_after)

    def appended(self, written: Point) -> None:
        """Note where the log's end now is: a mark every 64 KiB, and at a segment's start."""
        last = self.marks[-1]
        if written.segment != last.segment or written.offset - last.offset >= MARK_EVERY:
            self.marks.append(written)

    def consume(self, upto: int, segments: Sequence[Segment], end: Point, held_before: int) -> None:
        """Move the consumed point to the last mark at or before ``upto``, or to the end.

        ``segments`` are those still held (after compaction deleted some), ``end`` where the
        log ends, ``held_before`` the bytes held before (for the rate of consumption).
        """
        first = segments[0].first
        self.marks = [m for m in self.marks if m.segment >= first]
        if end.sequence <= upto:  # caught up: everything is consumed, to the byte
            self.marks = [end]
        reached = [m for m in self.marks if m.sequence <= upto]
        if reached and reached[-1].sequence >= self.consumed.sequence:
            self.consumed = reached[-1]
            self.marks = self.marks[len(reached) - 1 :]
        elif self.consumed.segment < first:
            self.consumed = self.marks[0]
        self._note_freed(held_before - self.held(segments))

    def _note_freed(self, freed: int) -> None:
        now = self._monotonic()
        self._consumed_total += max(0, freed)
        if self._last is not None:
            then, total = self._last
            if now > then and self._consumed_total > total:
                rate = (self._consumed_total - total) / (now - then)
                self._rate = rate if self._rate is None else 0.5 * self._rate + 0.5 * rate
        self._last = (now, self._consumed_total)
