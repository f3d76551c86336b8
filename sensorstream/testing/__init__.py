"""Helpers for testing pipelines and the engine, shipped with the package for users' tests too.

- :mod:`~sensorstream.testing.engine`: :func:`readings_frame` (canonical batches from plain
  rows), :func:`run_task` (drive a partition task, optionally restarting it from a snapshot)
  and :func:`apply_changes` (upserts and deletes into final results);
- :mod:`~sensorstream.testing.strategies`: Hypothesis strategies for random out-of-order
  streams (:func:`reading_streams`) and batch splits (:func:`batch_sizes`);
- :mod:`~sensorstream.testing.joins`: :func:`two_streams` (two generated streams with
  bounded disorder) and :func:`drive_join` (feed them to a join's operator, measuring what
  it holds);
- :mod:`~sensorstream.testing.doubles`: :class:`ListSource`, :class:`ListSink`,
  :class:`ManualClock`, :class:`Crash` and :func:`duckdb_held_elsewhere`.
"""

from __future__ import annotations

from sensorstream.testing.doubles import (
    Crash,
    ListSink,
    ListSource,
    ManualClock,
    duckdb_held_elsewhere,
)
from sensorstream.testing.engine import (
    WINDOW_END,
    WINDOW_START,
    ReadingRow,
    ReadingValue,
    TaskRun,
    Tick,
    apply_changes,
    checkpointed,
    readings_frame,
    restored_task,
    run_task,
)
from sensorstream.testing.joins import JoinRun, drive_join, two_streams
from sensorstream.testing.recorder import Recorder, recorded
from sensorstream.testing.strategies import STREAM_START_US, batch_sizes, reading_streams, split

__all__ = [
    "STREAM_START_US",
    "WINDOW_END",
    "WINDOW_START",
    "Crash",
    "JoinRun",
    "ListSink",
    "ListSource",
    "ManualClock",
    "ReadingRow",
    "ReadingValue",
    "Recorder",
    "TaskRun",
    "Tick",
    "apply_changes",
    "batch_sizes",
    "checkpointed",
    "drive_join",
    "duckdb_held_elsewhere",
    "reading_streams",
    "readings_frame",
    "recorded",
    "restored_task",
    "run_task",
    "split",
    "two_streams",
]
