"""Helpers for testing pipelines and the engine: canonical frames, a task driver, strategies.

:func:`readings_frame` builds a batch of canonical readings from plain rows,
:func:`run_task` drives a :class:`~sensorstream.engine.task.PartitionTask` over a feed of
batches and clock ticks (optionally restarting it from a snapshot half-way) and
:func:`apply_changes` turns the upserts and deletes it emitted into the final results.
:func:`reading_streams` and :func:`batch_sizes` are Hypothesis strategies for random
out-of-order streams; Hypothesis is only imported when they are called, so the rest of this
module works without it.

>>> frame = readings_frame(
...     [{"device_id": "d1", "ts": 1_000_000, "value": 20.5}], measurements=("value",)
... )
>>> frame.columns
['device_id', 'ts', 'value']
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import polars as pl

from sensorstream.engine.operator import OperatorState
from sensorstream.engine.task import EnginePlan, PartitionTask, TaskOutput
from sensorstream.readings import DEVICE, TS, TS_TYPE, ReadingFormat, decode_json_lines
from sensorstream.sinks.base import PipelineInfo, Sink, SinkBatch
from sensorstream.sources.base import Clock, Source, SourceBatch

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

ReadingValue = str | int | float | datetime | None
"""A cell of a plain reading row; ``ts`` is microseconds since the epoch or an aware datetime."""
ReadingRow = Mapping[str, ReadingValue]
"""A reading as a plain mapping: ``device_id``, ``ts``, measurements and tags by name."""

T = TypeVar("T")

WINDOW_START, WINDOW_END = "window_start", "window_end"
_BOOKKEEPING = ("revision", "final", "_op")
# 2024-01-01T00:00:00Z: a whole minute, so generated streams start on every window grid.
STREAM_START_US = 1_704_067_200_000_000
_SECOND_US = 1_000_000
_QUARTER_US = _SECOND_US // 4


def readings_frame(
    rows: Iterable[ReadingRow],
    *,
    measurements: Sequence[str] | Mapping[str, pl.DataType] = ("value",),
    tags: Sequence[str] = (),
) -> pl.DataFrame:
    """A batch of canonical readings (the engine's input) built from plain rows.

    Missing measurements and tags are null. Measurements given as names are ``Float64``.

    Args:
        rows: Readings in arrival order; ``ts`` in microseconds or as an aware datetime.
        measurements: Measurement names, or names with their Polars types.
        tags: Tag columns (strings).

    Returns:
        A frame with ``device_id``, ``ts`` (UTC microseconds), the measurements and the tags.
    """
    kinds: dict[str, pl.DataType] = (
        dict(measurements)
        if isinstance(measurements, Mapping)
        else {name: pl.Float64() for name in measurements}
    )
    listed = list(rows)
    columns: dict[str, list[ReadingValue]] = {
        DEVICE: [row.get(DEVICE) for row in listed],
        TS: [row.get(TS) for row in listed],
    }
    for name in (*kinds, *tags):
        columns[name] = [row.get(name) for row in listed]
    times = columns[TS]
    ts_column = (
        pl.Series(TS, times, TS_TYPE)
        if any(isinstance(value, datetime) for value in times)
        else pl.Series(TS, times, pl.Int64).cast(TS_TYPE)
    )
    return pl.DataFrame(
        [
            pl.Series(DEVICE, columns[DEVICE], pl.String),
            ts_column,
            *(pl.Series(name, columns[name], kind) for name, kind in kinds.items()),
            *(pl.Series(tag, columns[tag], pl.String) for tag in tags),
        ]
    )


@dataclass(frozen=True)
class Tick:
    """Processing time moves to ``now_us``; the task hears of it (so idleness can advance)."""

    now_us: int


@dataclass
class TaskRun:
    """Everything a task produced over a feed, in order."""

    plan: EnginePlan
    outputs: list[TaskOutput] = field(default_factory=list)
    watermarks: list[int] = field(default_factory=list)  # after each feed item

    @property
    def duplicates(self) -> int:
        """Readings dropped as duplicates."""
        return sum(output.duplicates for output in self.outputs)

    @property
    def late_count(self) -> int:
        """Readings too late for every window step."""
        return sum(output.late_count for output in self.outputs)

    @property
    def late(self) -> pl.DataFrame | None:
        """Readings too late for at least one step, with ``late_for``; None if there were none."""
        frames = [output.late for output in self.outputs if output.late is not None]
        return pl.concat(frames) if frames else None

    @property
    def accepted(self) -> pl.DataFrame | None:
        """Readings neither duplicate nor late for every step; None if no batch was processed."""
        frames = [output.accepted for output in self.outputs if output.accepted is not None]
        return pl.concat(frames) if frames else None

    def changes(self, step: str) -> list[pl.DataFrame]:
        """The result batches (upserts and deletes) one step emitted, in order."""
        return [output.results[step] for output in self.outputs if step in output.results]

    def results(self) -> dict[str, pl.DataFrame]:
        """Each step's final results: its changes applied in order (see :func:`apply_changes`)."""
        return {
            step.name: apply_changes(self.changes(step.name), step.key) for step in self.plan.steps
        }


def apply_changes(changes: Sequence[pl.DataFrame], key: Sequence[str]) -> pl.DataFrame:
    """The results that remain after applying upserts and deletes in order, as a sink would.

    Rows are identified by ``key`` and ``window_start``; the latest change of each wins, and
    a ``delete`` removes the row. The bookkeeping columns (``revision``, ``final``, ``_op``)
    are dropped and rows are sorted by key and window start.

    Args:
        changes: Result batches of one step, in the order they were emitted.
        key: The step's key columns.

    Returns:
        The surviving rows; an empty frame without columns if there were no changes.
    """
    frames = [frame for frame in changes if frame.height]
    if not frames:
        return pl.DataFrame()
    identity = [*key, WINDOW_START]
    latest = pl.concat(frames, how="diagonal_relaxed").unique(
        subset=identity, keep="last", maintain_order=True
    )
    kept = latest.filter(pl.col("_op") == "upsert")
    return kept.drop([c for c in _BOOKKEEPING if c in kept.columns]).sort(identity, nulls_last=True)


def run_task(
    plan: EnginePlan,
    feed: Iterable[pl.DataFrame | Tick],
    *,
    restart_after: int | None = None,
    finish: bool = True,
    start_us: int = 0,
) -> TaskRun:
    """Drive a fresh :class:`PartitionTask` over a feed of batches and clock ticks.

    Batches are processed at the current processing time, which starts at ``start_us`` and
    moves with each :class:`Tick`.

    Args:
        plan: What the task computes.
        feed: Batches of canonical readings (see :func:`readings_frame`) and ticks, in order.
        restart_after: If given, after this many feed items the task is snapshotted, the
            snapshot round-trips through Arrow IPC and JSON as a checkpoint would, and a new
            task restored from it takes over (past the end of the feed: before finishing).
        finish: Close every window at the end, as at the end of input.
        start_us: The processing time of batches before the first tick.

    Returns:
        The outputs and watermarks of every feed item (and of the finish).
    """
    task = PartitionTask(plan)
    run = TaskRun(plan)
    now_us = start_us
    for position, item in enumerate(feed):
        if position == restart_after:
            task = restored_task(plan, task.snapshot())
        if isinstance(item, Tick):
            now_us = item.now_us
            run.outputs.append(task.tick(now_us))
        else:
            run.outputs.append(task.process(item, now_us))
        run.watermarks.append(task.watermark)
    if restart_after is not None and restart_after >= len(run.watermarks):
        task = restored_task(plan, task.snapshot())
    if finish:
        run.outputs.append(task.finish())
        run.watermarks.append(task.watermark)
    return run


def restored_task(plan: EnginePlan, state: OperatorState) -> PartitionTask:
    """A new task continuing from ``state``, after a round trip through Arrow IPC and JSON."""
    frames: dict[str, pl.DataFrame] = {}
    for name, frame in state.frames.items():
        buffer = io.BytesIO()
        frame.write_ipc(buffer)
        buffer.seek(0)
        frames[name] = pl.read_ipc(buffer)
    task = PartitionTask(plan)
    task.restore(OperatorState(frames=frames, meta=json.loads(json.dumps(state.meta))))
    return task


def split(items: Sequence[T], sizes: Iterable[int]) -> list[list[T]]:
    """Consecutive pieces of ``items`` with the given sizes; what is left over is the last piece.

    >>> split([1, 2, 3, 4, 5], [2, 0, 1])
    [[1, 2], [], [3], [4, 5]]
    """
    pieces: list[list[T]] = []
    start = 0
    for size in sizes:
        pieces.append(list(items[start : start + size]))
        start += size
    if start < len(items) or not pieces:
        pieces.append(list(items[start:]))
    return pieces


def batch_sizes(
    total: int, *, max_batches: int = 6, allow_empty: bool = True
) -> SearchStrategy[list[int]]:
    """Sizes of consecutive batches that together hold ``total`` readings.

    Args:
        total: How many readings to split.
        max_batches: The most batches to cut them into.
        allow_empty: Whether a batch may be empty (the engine must accept empty batches).

    Returns:
        A strategy of size lists summing to ``total`` (``[0]`` when ``total`` is 0).
    """
    from hypothesis import strategies as st

    @st.composite
    def sizes(draw: st.DrawFn) -> list[int]:
        drawn: list[int] = []
        left = total
        while left > 0 and len(drawn) < max_batches - 1:
            size = draw(st.integers(0 if allow_empty else 1, left))
            drawn.append(size)
            left -= size
        return [*drawn, left] if left or not drawn else drawn

    return sizes()


def reading_streams(
    *,
    devices: Sequence[str] = ("d1", "d2", "d3"),
    measurements: Sequence[str] = ("temperature", "humidity"),
    tags: Mapping[str, Sequence[str | None]] | None = None,
    max_readings: int = 30,
    max_disorder_us: int = 4 * _SECOND_US,
    max_late_us: int = 10 * _SECOND_US,
    max_far_late_us: int = 30 * _SECOND_US,
    duplicate_percent: int = 10,
    late_percent: int = 10,
    far_late_percent: int = 10,
    start_us: int = STREAM_START_US,
) -> SearchStrategy[list[dict[str, ReadingValue]]]:
    """Random out-of-order streams of readings, in arrival order.

    Event time runs forward from ``start_us`` in steps of up to three seconds, on a grid of
    whole seconds, quarter seconds or single microseconds. Each reading lags that clock by up
    to ``max_disorder_us`` (the disorder a watermark should tolerate), some by up to
    ``max_late_us`` (late, often within the allowed lateness) or ``max_far_late_us`` (late
    for good), and some repeat an earlier reading exactly (duplicates). Measurements are on
    a quarter grid and may be null, but never all at once, as in a valid reading.

    Args:
        devices: Device ids to draw from.
        measurements: Float measurement names.
        tags: Tag names with the values (None for a missing tag) to draw from; by default
            one tag ``site`` that is ``north``, ``south`` or missing.
        max_readings: The longest stream.
        max_disorder_us: The largest lag of an ordinary reading behind event time.
        max_late_us: The largest lag of a late reading.
        max_far_late_us: The largest lag of a far-late reading.
        duplicate_percent: About how many readings in a hundred are repeats.
        late_percent: About how many in a hundred lag by up to ``max_late_us``.
        far_late_percent: About how many in a hundred lag by up to ``max_far_late_us``.
        start_us: Event time at the start of the stream.

    Returns:
        A strategy of lists of rows for :func:`readings_frame`.
    """
    from hypothesis import strategies as st

    tag_values: Mapping[str, Sequence[str | None]] = (
        {"site": ("north", "south", None)} if tags is None else tags
    )
    values = st.integers(-400, 400).map(lambda quarters: quarters / 4)

    @st.composite
    def streams(draw: st.DrawFn) -> list[dict[str, ReadingValue]]:
        # Times are drawn in quarter seconds: Hypothesis draws small ranges about uniformly
        # but wide ones mostly near zero, which would make late readings rare.
        grid = draw(st.sampled_from([_SECOND_US, _QUARTER_US, 1]))

        def quarters(most_us: int) -> int:
            return draw(st.integers(0, most_us // _QUARTER_US)) * _QUARTER_US // grid * grid

        def jitter() -> int:
            return draw(st.integers(0, _QUARTER_US - 1)) if grid == 1 else 0

        count = draw(st.integers(0, max_readings))
        clock = start_us
        rows: list[dict[str, ReadingValue]] = []
        for _ in range(count):
            percentile = draw(st.integers(0, 99))
            if percentile < duplicate_percent and rows:
                rows.append(dict(draw(st.sampled_from(rows))))
                continue
            clock += quarters(3 * _SECOND_US) + jitter()
            percentile -= duplicate_percent
            if 0 <= percentile < late_percent:
                bound = max_late_us
            elif 0 <= percentile - late_percent < far_late_percent:
                bound = max_far_late_us
            else:
                bound = max_disorder_us
            row: dict[str, ReadingValue] = {
                DEVICE: draw(st.sampled_from(list(devices))),
                TS: clock - quarters(bound) - jitter(),
            }
            for name in measurements:
                row[name] = draw(st.none() | values)
            if measurements and all(row[name] is None for name in measurements):
                row[measurements[0]] = draw(values)
            for tag, choices in tag_values.items():
                row[tag] = draw(st.sampled_from(list(choices)))
            rows.append(row)
        return rows

    return streams()


# -- runtime doubles: a source and a sink in memory, a clock you move by hand -----------------


class Crash(RuntimeError):
    """Raised by :class:`ListSource` to simulate a process dying mid-stream."""


@dataclass
class ManualClock:
    """A processing-time clock that only moves when told to.

    >>> from datetime import UTC, datetime, timedelta
    >>> clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(seconds=5)).second
    5
    """

    now: datetime

    def __call__(self) -> datetime:
        """The current (manual) time."""
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward and return the new time."""
        self.now += delta
        return self.now


class ListSource(Source):
    """Batches of JSON lines given up front; ``None`` items stand for "nothing right now".

    Each batch's position is its index. ``crash_at`` raises :class:`Crash` before yielding
    that batch, once, to test recovery; ``on_idle`` runs at each ``None`` (to move a clock);
    ``endless`` keeps yielding ``None`` after the last batch, like a live source gone quiet.
    """

    def __init__(
        self,
        batches: Sequence[Sequence[str] | None],
        *,
        crash_at: int | None = None,
        on_idle: Callable[[], None] | None = None,
        endless: bool = False,
    ) -> None:
        self.batches = list(batches)
        self.crash_at = crash_at
        self.on_idle = on_idle
        self.endless = endless

    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Iterator[SourceBatch | None]:
        """Yield the batches after ``resume_after[0]``."""
        start = resume_after.get(0, -1) + 1
        for index in range(start, len(self.batches)):
            if index == self.crash_at:
                self.crash_at = None
                msg = f"simulated crash before batch {index}"
                raise Crash(msg)
            lines = self.batches[index]
            if lines is None:
                if self.on_idle is not None:
                    self.on_idle()
                yield None
                continue
            decoded = decode_json_lines(
                "\n".join(lines).encode(), fmt, arrived_at=clock(), origin=f"batch {index}"
            )
            yield SourceBatch(0, index, decoded.readings, decoded.dead_letters, decoded.payloads)
        while self.endless:
            if self.on_idle is not None:
                self.on_idle()
            yield None


class ListSink(Sink):
    """Keeps everything in memory, with the same idempotence contract as a real sink."""

    def __init__(self) -> None:
        self.info: PipelineInfo | None = None
        self.readings: list[tuple[int, int, pl.DataFrame]] = []
        self.dead_letters: list[tuple[int, int, pl.DataFrame]] = []
        self.late: list[tuple[int, int, pl.DataFrame]] = []
        self.results: dict[str, dict[tuple[object, ...], dict[str, object]]] = {}
        self.flushes = 0

    def open(self, pipeline: PipelineInfo) -> None:
        """Remember the pipeline's steps (for result keys)."""
        self.info = pipeline

    def restore(self, positions: Mapping[int, int]) -> None:
        """Drop raw rows written after the checkpointed positions."""
        for store in (self.readings, self.dead_letters, self.late):
            store[:] = [e for e in store if e[1] <= positions.get(e[0], -1)]

    def write(self, batch: SinkBatch) -> None:
        """Append raw rows; apply result upserts and deletes in order."""
        assert self.info is not None, "open() first"
        for store, frame in (
            (self.readings, batch.readings),
            (self.dead_letters, batch.dead_letters),
            (self.late, batch.late),
        ):
            if frame is not None and frame.height:
                store.append((batch.partition, batch.position, frame))
        keys = {step.name: step.key for step in self.info.steps}
        for step, frame in batch.results.items():
            table = self.results.setdefault(step, {})
            for row in frame.iter_rows(named=True):
                key = tuple(row[k] for k in (*keys[step], "window_start"))
                if row["_op"] == "delete":
                    table.pop(key, None)
                else:
                    table[key] = {k: v for k, v in row.items() if k not in ("_op", "revision")}

    def flush(self) -> None:
        """Count flushes (nothing to make durable in memory)."""
        self.flushes += 1

    def final(self, step: str) -> pl.DataFrame:
        """The current results of one step, sorted by key and window."""
        rows = list(self.results.get(step, {}).values())
        frame = pl.DataFrame(rows) if rows else pl.DataFrame()
        return frame.sort(frame.columns[:2]) if rows else frame

    def count(self, store: str) -> int:
        """Rows held in ``readings``, ``dead_letters`` or ``late``."""
        entries: list[tuple[int, int, pl.DataFrame]] = getattr(self, store)
        return sum(frame.height for _, _, frame in entries)


@contextmanager
def duckdb_held_elsewhere(path: Path) -> Iterator[None]:
    """Keep a DuckDB file open for writing in another process, as a running pipeline would."""
    script = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
        "sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            msg = f"the process meant to hold {path} did not start"
            raise RuntimeError(msg)
        yield
    finally:
        holder.communicate("")
