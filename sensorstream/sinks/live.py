"""The live sink: window results and alert transitions as events, for the API's SSE stream.

A :class:`LiveHub` keeps the latest events in a bounded ring (``capacity``), each with a
sequence number that is its SSE id. Readers wait for events after the last id they saw
(``Last-Event-ID`` resumes a dropped connection without losing or repeating an event, as
long as the events it missed are still in the ring; a reader further behind is told how
many it missed, and reads the rest from the store). The :class:`LiveSink` publishes what
each batch produced: every results row (a correction is a row with a higher revision) and
every alert transition. The runner's thread writes, request threads read: one lock and
one condition, no event loop in the sink. Each pipeline has its own hub.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch


@dataclass(frozen=True)
class LiveEvent:
    """One event: its id (a sequence number), its kind and its JSON data."""

    id: int
    kind: str  # "result" or "alert"
    data: bytes

    def sse(self) -> bytes:
        """The event in the Server-Sent Events wire format."""
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.kind.encode(), self.data)


@dataclass(frozen=True)
class Missed:
    """A reader asked for events older than the ring holds: this many are gone from it."""

    count: int


class LiveHub:
    """The latest events, and readers waiting for more."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._events: deque[LiveEvent] = deque(maxlen=capacity)
        self._next = 1
        self._changed = threading.Condition()
        self.closed = False

    @property
    def last_id(self) -> int:
        """The id of the newest event (0 before the first)."""
        return self._next - 1

    def publish(self, kind: str, rows: list[dict[str, Any]]) -> None:
        """Add events, one per row, and wake the readers."""
        if not rows:
            return
        with self._changed:
            for row in rows:
                data = orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS)
                self._events.append(LiveEvent(self._next, kind, data))
                self._next += 1
            self._changed.notify_all()

    def close(self) -> None:
        """No more events: wake every reader, so that its stream can end (a server stopping)."""
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def after(self, last_id: int, timeout: float = 0.0) -> tuple[list[LiveEvent], Missed | None]:
        """Events after ``last_id``, waiting up to ``timeout`` seconds for one to come.

        Once the hub is closed it waits no more: :attr:`closed` tells the reader to stop.
        """
        with self._changed:
            if self.last_id <= last_id and timeout > 0:
                self._changed.wait_for(lambda: self.last_id > last_id or self.closed, timeout)
            events = [event for event in self._events if event.id > last_id]
            oldest = self._events[0].id if self._events else self._next
            missed = Missed(oldest - last_id - 1) if last_id + 1 < oldest and last_id else None
            return events, missed


class LiveSink(Sink):
    """Publishes each batch's results and alert transitions to a :class:`LiveHub`."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.pipeline = ""

    def open(self, pipeline: PipelineInfo) -> None:
        """Remember the pipeline's name, which every event carries."""
        self.pipeline = pipeline.name

    def write(self, batch: SinkBatch) -> None:
        """Every results row and transition of the batch, as events."""
        for step, frame in batch.results.items():
            rows = [{"pipeline": self.pipeline, "step": step, **row} for row in frame.to_dicts()]
            self.hub.publish("result", rows)
        for rule, frame in batch.alerts.items():
            rows = [{"pipeline": self.pipeline, "rule": rule, **row} for row in frame.to_dicts()]
            self.hub.publish("alert", rows)
