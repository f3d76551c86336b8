"""Driving the engine in tests: canonical frames from plain rows, a task driver, final results.

:func:`readings_frame` builds a batch of canonical readings from plain rows,
:func:`run_task` drives a :class:`~sensorstream.engine.task.PartitionTask` over a feed of
batches and clock ticks (optionally restarting it from a snapshot half-way) and
:func:`apply_changes` turns the upserts and deletes it emitted into the final results.

>>> frame = readings_frame(
...     [{"device_id": "d1", "ts": 1_000_000, "value": 20.5}], measurements=("value",)
... )
>>> frame.columns
['device_id', 'ts', 'value']
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from sensorstream.engine.operator import OperatorState
from sensorstream.engine.task import EnginePlan, PartitionTask, TaskOutput
from sensorstream.readings import DEVICE, TS, TS_TYPE

ReadingValue = str | int | float | datetime | None
"""A cell of a plain reading row; ``ts`` is microseconds since the epoch or an aware datetime."""
ReadingRow = Mapping[str, ReadingValue]
"""A reading as a plain mapping: ``device_id``, ``ts``, measurements and tags by name."""

WINDOW_START, WINDOW_END = "window_start", "window_end"
_BOOKKEEPING = ("revision", "final", "_op")


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
            step.name: apply_changes(self.changes(step.name), step.key)
            for step in self.plan.windows
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
    task = PartitionTask(plan)
    task.restore(checkpointed(state))
    return task


def checkpointed(state: OperatorState) -> OperatorState:
    """``state`` as a checkpoint gives it back: frames through Arrow IPC, metadata through JSON."""
    frames: dict[str, pl.DataFrame] = {}
    for name, frame in state.frames.items():
        buffer = io.BytesIO()
        frame.write_ipc(buffer)
        buffer.seek(0)
        frames[name] = pl.read_ipc(buffer)
    return OperatorState(frames=frames, meta=json.loads(json.dumps(state.meta)))
