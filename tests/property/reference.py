"""A per-event model of the engine: plain Python, one reading at a time, no Polars.

It reads the same declarations as the engine (``EnginePlan``, window and aggregate
dataclasses) but none of its logic: every reading is judged against the watermark that
held just before it, deduplicated, folded into the windows it belongs to, and after every
reading the windows the watermark has passed are emitted and those past their lateness are
evicted. Aggregates are computed from the readings each window holds, so the model is
obviously right rather than fast. The property tests compare it with ``PartitionTask``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sensorstream.engine.task import EnginePlan
from sensorstream.engine.windows import HoppingWindow, SessionWindow, WindowStep
from sensorstream.testing import ReadingRow

MINUS_INFINITY = -(10**30)
PLUS_INFINITY = 10**30

Scalar = str | int | float | None
Key = tuple[Scalar, ...]
WindowId = tuple[Key, int]  # (key values, window start)
Result = dict[str, Scalar]  # window_end and one entry per aggregate


def micros(delta: timedelta) -> int:
    """A timedelta in whole microseconds."""
    return delta // timedelta(microseconds=1)


@dataclass(frozen=True)
class Reading:
    """One reading: device, event time in microseconds, measurement values and tags."""

    device_id: str
    ts: int
    values: tuple[tuple[str, float | None], ...]
    tags: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def from_row(
        cls, row: ReadingRow, measurements: Sequence[str], tags: Sequence[str] = ()
    ) -> Reading:
        """A reading from a plain row as built by ``sensorstream.testing``."""
        device, ts = row["device_id"], row["ts"]
        if not isinstance(device, str) or not isinstance(ts, int):
            msg = f"a reference row needs a str device_id and an int ts, got {row!r}"
            raise TypeError(msg)
        values: list[tuple[str, float | None]] = []
        for name in measurements:
            value = row.get(name)
            if value is not None and not isinstance(value, int | float):
                msg = f"measurement {name!r} must be a number, got {value!r}"
                raise TypeError(msg)
            values.append((name, None if value is None else float(value)))
        tag_values: list[tuple[str, str | None]] = []
        for name in tags:
            value = row.get(name)
            if value is not None and not isinstance(value, str):
                msg = f"tag {name!r} must be a string, got {value!r}"
                raise TypeError(msg)
            tag_values.append((name, value))
        return cls(device, ts, tuple(values), tuple(tag_values))

    def column(self, name: str) -> Scalar:
        """The value of a column by name (device, time, measurement or tag)."""
        if name == "device_id":
            return self.device_id
        if name == "ts":
            return self.ts
        for pairs in (self.values, self.tags):
            for column, value in pairs:
                if column == name:
                    return value
        return None

    def measurement(self, name: str) -> float | None:
        """The value of one measurement, None if null."""
        return dict(self.values).get(name)


@dataclass
class Window:
    """One window of one key: its span and the readings it holds, by arrival number."""

    start: int
    end: int
    members: list[tuple[int, Reading]]
    dirty: bool = True
    emitted: bool = False  # a result for (key, start) is currently shown


@dataclass
class LateReading:
    """A reading too late for at least one step."""

    reading: Reading
    late_for: str


def aggregate(
    function: str, measurement: str | None, members: Sequence[tuple[int, Reading]]
) -> Scalar:
    """The exact value of one aggregate over a window's readings (percentiles exact too)."""
    if measurement is None:
        return len(members)
    present = [
        (ts_arrival, value)
        for ts_arrival, value in (
            ((reading.ts, arrival), reading.measurement(measurement))
            for arrival, reading in members
        )
        if value is not None
    ]
    values = [value for _, value in present]
    n = len(values)
    if function == "count":
        return n
    if n == 0:
        return None
    if function == "sum":
        return math.fsum(values)
    if function == "mean":
        return math.fsum(values) / n
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function == "first":
        return min(present, key=lambda pair: pair[0])[1]
    if function == "last":
        return max(present, key=lambda pair: pair[0])[1]
    if function in ("variance", "stddev"):
        if n < 2:
            return None
        mean = math.fsum(values) / n
        variance = math.fsum((value - mean) ** 2 for value in values) / (n - 1)
        return math.sqrt(variance) if function == "stddev" else variance
    if function.startswith("p"):
        quantile = float(function[1:]) / 100
        return sorted(values)[math.floor(quantile * (n - 1))]
    msg = f"the reference has no aggregate {function!r}"
    raise ValueError(msg)


@dataclass
class StepModel:
    """One window step: open windows per (key, start), the results shown, what was evicted."""

    step: WindowStep
    lateness: int
    open: dict[WindowId, Window] = field(default_factory=dict)
    results: dict[WindowId, Result] = field(default_factory=dict)
    evicted: set[WindowId] = field(default_factory=set)

    @property
    def name(self) -> str:
        """The step's name."""
        return self.step.name

    def key_of(self, reading: Reading) -> Key:
        """The values of the step's key columns for one reading."""
        return tuple(reading.column(column) for column in self.step.key)

    def add(self, arrival: int, reading: Reading, watermark_before: int) -> bool:
        """Fold one reading in; True if it is too late for this step."""
        window = self.step.window
        if isinstance(window, SessionWindow):
            return self._add_to_session(arrival, reading, watermark_before, micros(window.gap))
        slide = micros(window.slide if isinstance(window, HoppingWindow) else window.size)
        return self._add_to_fixed(
            arrival, reading, watermark_before, micros(window.size), slide, micros(window.offset)
        )

    def _add_to_fixed(
        self,
        arrival: int,
        reading: Reading,
        watermark_before: int,
        size: int,
        slide: int,
        offset: int,
    ) -> bool:
        last_start = (reading.ts - offset) // slide * slide + offset
        if last_start + size + self.lateness <= watermark_before:
            return True
        key = self.key_of(reading)
        start = last_start
        while start + size > reading.ts:
            if start + size + self.lateness > watermark_before:
                identity = (key, start)
                if identity in self.evicted:
                    msg = f"window {identity} was evicted but would take a reading"
                    raise AssertionError(msg)
                window = self.open.setdefault(identity, Window(start, start + size, []))
                window.members.append((arrival, reading))
                window.dirty = True
            start -= slide
        return False

    def _add_to_session(
        self, arrival: int, reading: Reading, watermark_before: int, gap: int
    ) -> bool:
        if reading.ts + gap + self.lateness <= watermark_before:
            return True
        key = self.key_of(reading)
        new_start, new_end = reading.ts, reading.ts + gap
        touching = [
            window
            for (window_key, _), window in self.open.items()
            if window_key == key and window.start <= new_end and new_start <= window.end
        ]
        start = min([new_start, *(window.start for window in touching)])
        end = max([new_end, *(window.end for window in touching)])
        members = sorted(
            [(arrival, reading), *(member for window in touching for member in window.members)],
            key=lambda member: member[0],
        )
        emitted = False
        for window in touching:
            del self.open[(key, window.start)]
            if window.emitted and window.start != start:
                del self.results[(key, window.start)]  # retracted: the session now starts earlier
            emitted = emitted or (window.emitted and window.start == start)
        self.open[(key, start)] = Window(start, end, members, dirty=True, emitted=emitted)
        return False

    def emit_and_evict(self, watermark: int) -> None:
        """Show every changed window the watermark passed; forget those past their lateness."""
        for identity, window in self.open.items():
            if window.end <= watermark and window.dirty:
                self.results[identity] = self._result(window)
                window.dirty = False
                window.emitted = True
        for identity, window in list(self.open.items()):
            if window.end + self.lateness <= watermark:
                del self.open[identity]
                self.evicted.add(identity)

    def _result(self, window: Window) -> Result:
        result: Result = {"window_end": window.end}
        for agg in self.step.aggregates:
            result[agg.name] = aggregate(agg.function, agg.measurement, window.members)
        return result


@dataclass
class ReferenceTask:
    """The per-event model of one partition's task."""

    plan: EnginePlan
    watermark: int = MINUS_INFINITY
    max_event: int | None = None
    last_arrival: int | None = None
    duplicates: int = 0
    late_count: int = 0
    late: list[LateReading] = field(default_factory=list)
    accepted: list[Reading] = field(default_factory=list)
    arrivals: int = 0
    seen: set[tuple[object, ...]] = field(default_factory=set)
    steps: list[StepModel] = field(default_factory=list)

    def __post_init__(self) -> None:
        lateness = micros(self.plan.event_time.allowed_lateness)
        self.steps = [StepModel(step, lateness) for step in self.plan.windows]

    @property
    def out_of_orderness(self) -> int:
        """The disorder bound in microseconds."""
        return micros(self.plan.event_time.out_of_orderness)

    @property
    def horizon(self) -> int:
        """How far behind the watermark repeats are still recognised, in microseconds."""
        if self.plan.dedup.horizon is not None:
            return micros(self.plan.dedup.horizon)
        spans = [0]
        for step in self.plan.windows:
            window = step.window
            spans.append(
                micros(window.gap) if isinstance(window, SessionWindow) else micros(window.size)
            )
        return self.out_of_orderness + micros(self.plan.event_time.allowed_lateness) + max(spans)

    def process(self, readings: Sequence[Reading], now_us: int) -> None:
        """Take a batch, one reading at a time, arriving at processing time ``now_us``."""
        for reading in readings:
            self._one(reading)
            self.last_arrival = now_us

    def _one(self, reading: Reading) -> None:
        arrival = self.arrivals
        self.arrivals += 1
        watermark_before = self.watermark
        self.max_event = reading.ts if self.max_event is None else max(self.max_event, reading.ts)
        self.watermark = max(self.watermark, self.max_event - self.out_of_orderness)
        if self._is_duplicate(reading, watermark_before):
            self.duplicates += 1
        else:
            late_for = [
                step.name for step in self.steps if step.add(arrival, reading, watermark_before)
            ]
            if late_for:
                self.late.append(LateReading(reading, ",".join(late_for)))
            if self.steps and len(late_for) == len(self.steps):
                self.late_count += 1
            else:
                self.accepted.append(reading)
        self._emit_and_evict()

    def _is_duplicate(self, reading: Reading, watermark_before: int) -> bool:
        if not self.plan.dedup.enabled:
            return False
        if reading.ts < watermark_before - self.horizon:
            return False  # too old to be recognised, and not remembered either
        key = (reading.device_id, reading.ts, *(value for _, value in reading.values))
        if key in self.seen:
            return True
        self.seen.add(key)
        return False

    def tick(self, now_us: int) -> None:
        """Processing time moved: an idle partition's watermark follows it."""
        idle = self.plan.event_time.idle_timeout
        if idle is None or self.max_event is None or self.last_arrival is None:
            return
        silent = now_us - self.last_arrival
        if silent >= micros(idle):
            self.watermark = max(self.watermark, self.max_event - self.out_of_orderness + silent)
            self._emit_and_evict()

    def finish(self) -> None:
        """End of input: the watermark jumps to infinity and every window closes."""
        self.watermark = PLUS_INFINITY
        self._emit_and_evict()

    def _emit_and_evict(self) -> None:
        for step in self.steps:
            step.emit_and_evict(self.watermark)

    def results(self) -> Mapping[str, Mapping[WindowId, Result]]:
        """The results shown per step, by (key values, window start)."""
        return {step.name: step.results for step in self.steps}
