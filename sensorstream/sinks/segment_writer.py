"""A pipeline's raw readings as Parquet segments: written beside the pipeline, restored exactly.

The DuckDB sink hands each partition's waiting readings to :class:`ReadingSegments`, which
compresses and writes them in a thread of its own, so the pipeline goes on meanwhile;
:meth:`ReadingSegments.flush` returns once every segment handed over is durable (the
checkpoint that follows relies on it). :meth:`ReadingSegments.restore` drops what lies after
a checkpoint, and the optional retention deletes segments whose readings all lie too far
behind the newest event time stored. The layout is :mod:`~sensorstream.sinks.segments`'.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from sensorstream.durable import sync_folder
from sensorstream.errors import SinkError
from sensorstream.readings import TS
from sensorstream.sinks.segments import (
    Segment,
    list_segments,
    pipeline_folder,
    remove_temporaries,
    write_segment,
)

# Segments compressing while the pipeline goes on; one more waits for the oldest, so memory
# stays bounded when the disk is slower than the source.
IN_FLIGHT = 2


@dataclass(frozen=True)
class _Stored:
    """A segment on disk and the newest event time among its rows (None: unknown or none)."""

    segment: Segment
    newest: datetime | None


class ReadingSegments:
    """One pipeline's folder of reading segments: writes in the background, restore, retention.

    ``retention`` deletes, at each flush, the segments whose newest reading is older than
    the newest reading stored minus ``retention``; None keeps every segment.
    """

    def __init__(self, store: Path, pipeline: str, *, retention: timedelta | None = None) -> None:
        self.folder = pipeline_folder(store, pipeline)
        self.pipeline = pipeline
        self.retention = retention
        self._executor: ThreadPoolExecutor | None = None
        self._writing: deque[Future[_Stored]] = deque()
        self._stored: dict[Path, _Stored] = {}
        self._next_sequence = 1  # 0 names segments migrated from a readings table
        self._unsynced = False

    def open(self) -> None:
        """Find the segments already stored; forget half-written ones a crash left."""
        try:
            remove_temporaries(self.folder)
            segments = list_segments(self.folder)
            for segment in segments:
                newest = _newest_event_time(segment.path) if self.retention else None
                self._stored[segment.path] = _Stored(segment, newest)
        except (OSError, pa.ArrowException) as error:
            msg = f"cannot open the reading segments in {self.folder}: {error}"
            raise SinkError(msg) from error
        self._next_sequence = max((s.sequence for s in segments), default=0) + 1
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="reading-segments")

    def write(self, partition: int, frames: Sequence[pl.DataFrame]) -> None:
        """Hand one partition's readings (with ``partition`` and ``position``) to the writer.

        Returns at once unless ``IN_FLIGHT`` segments are still being written; an error
        writing one is raised here or by :meth:`flush`.
        """
        if self._executor is None:
            msg = f"the reading segments in {self.folder} are not open; call open() first"
            raise SinkError(msg)
        while len(self._writing) >= IN_FLIGHT:
            self._collect_oldest()
        if not self.folder.is_dir():  # made on the first write: a pipeline may store none
            self._make_folder()
        sequence, self._next_sequence = self._next_sequence, self._next_sequence + 1
        self._writing.append(
            self._executor.submit(self._write_segment, partition, list(frames), sequence)
        )

    def flush(self) -> None:
        """Return once every segment handed over is durable; then apply the retention."""
        while self._writing:
            self._collect_oldest()
        self._expire()
        self._sync()

    def flush_started(self) -> Callable[[], None]:
        """Start a flush: the returned call (any thread) waits until it is durable.

        The segments handed over so far are written in order by the one writer thread, so
        a folder sync queued behind them makes them all durable; the call waits for the
        segments (raising a failed one's error) and then for the sync. Bookkeeping and the
        retention stay in the caller's thread: segments already written are collected now,
        the rest at the next write or flush.
        """
        if self._executor is None:
            msg = f"the reading segments in {self.folder} are not open; call open() first"
            raise SinkError(msg)
        while self._writing and self._writing[0].done():
            self._collect_oldest()
        self._expire()
        pending = list(self._writing)
        if not pending and not self._unsynced:
            return _nothing
        self._unsynced = False  # the sync below covers what is collected so far
        folder = self.folder
        synced = self._executor.submit(sync_folder, folder)

        def wait() -> None:
            for future in pending:
                try:
                    future.result()
                except (OSError, pl.exceptions.PolarsError) as error:
                    msg = (
                        f"writing readings of pipeline {self.pipeline!r} to {folder} failed: "
                        f"{error}; the pipeline resumes from its last checkpoint when run again"
                    )
                    raise SinkError(msg) from error
            synced.result()

        return wait

    def restore(self, positions: Mapping[int, int]) -> None:
        """Drop readings after these positions; a partition not listed loses all of them.

        A segment that straddles its partition's position is rewritten with the rows up to
        it, under its own sequence: a crash midway leaves the old file beside the new one,
        and the restore after it (from the same checkpoint) rewrites and drops it again.
        """
        self.flush()
        try:
            for path, stored in sorted(self._stored.items()):
                segment = stored.segment
                kept = positions.get(segment.partition)
                if kept is None or segment.first > kept:
                    self._remove(path)
                elif segment.last > kept:
                    self._truncate(segment, kept)
            self._sync()
        except (OSError, pl.exceptions.PolarsError) as error:
            msg = (
                f"forgetting readings after the checkpoint in {self.folder} failed: {error}; "
                "the next run tries again from the same checkpoint"
            )
            raise SinkError(msg) from error

    def close(self) -> None:
        """Wait for the segments being written, then stop the writer thread."""
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    # -- writing ---------------------------------------------------------------------------
    def _write_segment(self, partition: int, frames: list[pl.DataFrame], sequence: int) -> _Stored:
        """Compress and write one segment; runs in the writer thread."""
        readings = pl.concat(frames, how="diagonal_relaxed", rechunk=False)
        readings = readings.select("partition", "position", pl.exclude("partition", "position"))
        first, last = readings.select(
            pl.col("position").min().alias("first"), pl.col("position").max().alias("last")
        ).row(0)
        segment = Segment(
            self.folder / Segment.name(partition, first, last, sequence),
            partition,
            first,
            last,
            sequence,
        )
        write_segment(readings, segment.path)
        return _Stored(segment, _newest(readings))

    def _make_folder(self) -> None:
        missing = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for folder in reversed(missing):  # each new folder's entry in its parent
                sync_folder(folder.parent)
        except OSError as error:
            msg = f"cannot create {self.folder} for the readings of {self.pipeline!r}: {error}"
            raise SinkError(msg) from error

    def _collect_oldest(self) -> None:
        future = self._writing.popleft()
        try:
            stored = future.result()
        except (OSError, pl.exceptions.PolarsError) as error:
            msg = (
                f"writing readings of pipeline {self.pipeline!r} to {self.folder} failed: "
                f"{error}; the pipeline resumes from its last checkpoint when run again"
            )
            raise SinkError(msg) from error
        self._stored[stored.segment.path] = stored
        self._unsynced = True

    # -- removing ----------------------------------------------------------------------------
    def _truncate(self, segment: Segment, kept: int) -> None:
        rows = pl.read_parquet(segment.path, hive_partitioning=False)
        rows = rows.filter(pl.col("position") <= kept)
        if rows.height:
            # Written before the old one goes: a crash in between loses no row it keeps.
            last = int(rows.select(pl.col("position").max()).item())
            name = Segment.name(segment.partition, segment.first, last, segment.sequence)
            shorter = Segment(
                self.folder / name, segment.partition, segment.first, last, segment.sequence
            )
            write_segment(rows, shorter.path)
            self._stored[shorter.path] = _Stored(shorter, _newest(rows))
        self._remove(segment.path)

    def _expire(self) -> None:
        """Delete the segments whose readings all lie ``retention`` behind the newest."""
        if self.retention is None:
            return
        newest = max((s.newest for s in self._stored.values() if s.newest), default=None)
        if newest is None:
            return
        horizon = newest - self.retention
        for path, stored in list(self._stored.items()):
            if stored.newest is not None and stored.newest < horizon:
                self._remove(path)

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._stored.pop(path, None)
        self._unsynced = True

    def _sync(self) -> None:
        if self._unsynced:
            sync_folder(self.folder)
            self._unsynced = False


def _nothing() -> None:
    """Nothing was left to make durable."""


def _newest(readings: pl.DataFrame) -> datetime | None:
    if TS not in readings.columns:
        return None
    newest = readings[TS].max()
    return newest if isinstance(newest, datetime) else None


def _newest_event_time(path: Path) -> datetime | None:
    """The newest ``ts`` of a segment, from its row groups' statistics (no data read)."""
    metadata = pq.read_metadata(path)
    newest: datetime | None = None
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for number in range(row_group.num_columns):
            column = row_group.column(number)
            statistics = column.statistics
            if column.path_in_schema != TS or statistics is None or not statistics.has_min_max:
                continue
            value = statistics.max
            if isinstance(value, datetime) and (newest is None or value > newest):
                newest = value
    return newest
