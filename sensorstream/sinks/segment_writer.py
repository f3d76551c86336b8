"""A pipeline's raw readings as Parquet segments: written beside the pipeline, restored exactly.

The DuckDB sink hands each partition's waiting readings to :class:`ReadingSegments`, which
compresses and writes them in a thread of its own, so the pipeline goes on meanwhile;
:meth:`ReadingSegments.flush` returns once every segment handed over is durable (the
checkpoint that follows relies on it). :meth:`ReadingSegments.restore` drops what lies after
a checkpoint, and the optional retention deletes segments whose readings all lie too far
behind the newest event time stored. The layout is :mod:`~sensorstream.sinks.segments`'.

Once segments are durable, small ones are merged (:mod:`~sensorstream.sinks.compaction`)
in a second thread, one run at a time, so a flush never waits for a merge; the merged
inputs are removed ``grace`` later, at a flush, or when the writer closes or restores.
"""

from __future__ import annotations

import time
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
from sensorstream.sinks.compaction import CompactionPolicy, merge, plan_merges
from sensorstream.sinks.segments import (
    Segment,
    pipeline_folder,
    remove_temporaries,
    stored_segments,
    superseded,
    write_segment,
)

# Segments compressing while the pipeline goes on; one more waits for the oldest, so memory
# stays bounded when the disk is slower than the source.
IN_FLIGHT = 2


@dataclass(frozen=True)
class _Stored:
    """A segment on disk, its rows, and the newest event time among them (None: none)."""

    segment: Segment
    rows: int
    newest: datetime | None


@dataclass(frozen=True)
class _Merged:
    """A merge done: the segment written and the inputs it supersedes."""

    stored: _Stored
    inputs: tuple[Segment, ...]


class ReadingSegments:
    """One pipeline's folder of reading segments: writes in the background, restore, retention.

    ``retention`` deletes, at each flush, the segments whose newest reading is older than
    the newest reading stored minus ``retention``; None keeps every segment.
    ``compaction`` says when to merge small segments; None never merges them.
    """

    def __init__(
        self,
        store: Path,
        pipeline: str,
        *,
        retention: timedelta | None = None,
        compaction: CompactionPolicy | None = CompactionPolicy(),  # noqa: B008 (frozen)
    ) -> None:
        self.folder = pipeline_folder(store, pipeline)
        self.pipeline = pipeline
        self.retention = retention
        self.compaction = compaction
        self._executor: ThreadPoolExecutor | None = None
        self._merger: ThreadPoolExecutor | None = None
        self._writing: deque[Future[_Stored]] = deque()
        self._merging: Future[_Merged] | None = None
        self._merging_inputs: frozenset[Path] = frozenset()
        self._stored: dict[Path, _Stored] = {}
        self._superseded: list[tuple[float, Segment]] = []  # (when to remove, merged input)
        self._next_sequence = 1  # 0 names segments migrated from a readings table
        self._unsynced = False

    def open(self) -> None:
        """Find the segments already stored; forget what a crash left half done.

        That is half-written files, and the inputs of a merge that was in place already
        (superseded, so no reader reads them).
        """
        try:
            remove_temporaries(self.folder)
            segments = stored_segments(self.folder)
            replaced = {segment.path for segment in superseded(segments)}
            for path in replaced:
                self._remove(path)
            for segment in segments:
                if segment.path not in replaced:
                    self._stored[segment.path] = _stored(segment)
            self._sync()
        except (OSError, pa.ArrowException) as error:
            msg = f"cannot open the reading segments in {self.folder}: {error}"
            raise SinkError(msg) from error
        self._next_sequence = max((s.sequence for s in segments), default=0) + 1
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="reading-segments")
        self._merger = ThreadPoolExecutor(1, thread_name_prefix="reading-compaction")

    def write(self, partition: int, frames: Sequence[pl.DataFrame]) -> None:
        """Hand one partition's readings (with ``partition`` and ``position``) to the writer.

        Returns at once unless ``IN_FLIGHT`` segments are still being written; an error
        writing one is raised here or by :meth:`flush`.
        """
        if self._executor is None:
            msg = f"the reading segments in {self.folder} are not open; call open() first"
            raise SinkError(msg)
        while len(self._writing) >= IN_FLIGHT or (self._writing and self._writing[0].done()):
            self._collect_oldest()
        self._collect_merge(wait=False)
        self._start_merge()  # segments come faster than flushes in a replay
        if not self.folder.is_dir():  # made on the first write: a pipeline may store none
            self._make_folder()
        sequence, self._next_sequence = self._next_sequence, self._next_sequence + 1
        self._writing.append(
            self._executor.submit(self._write_segment, partition, list(frames), sequence)
        )

    def flush(self) -> None:
        """Return once every segment handed over is durable; then apply the retention.

        A merge done meanwhile takes its segments' place; the next is started.
        """
        self._settle()
        self._start_merge()

    def compact(self) -> int:
        """Merge every run due, one after the other, waiting for each; return how many.

        A flush merges in the background, one run at a time; this is for a store no
        pipeline writes at the moment (the inputs go at once, no grace).
        """
        merges = 0
        self._settle()
        self._collect_merge(wait=True)
        while True:
            self._start_merge()
            if self._merging is None:
                break
            self._collect_merge(wait=True)
            merges += 1
        self._remove_superseded(None)
        self._sync()
        return merges

    def flush_started(self) -> Callable[[], None]:
        """Start a flush: the returned call (any thread) waits until it is durable.

        The segments handed over so far are written in order by the one writer thread, so
        a folder sync queued behind them makes them all durable; the call waits for the
        segments (raising a failed one's error) and then for the sync. Bookkeeping, the
        retention and merges stay in the caller's thread, as :meth:`flush` does them, only
        without waiting: segments already written (and a merge done) are collected now,
        the rest at the next write or flush.
        """
        if self._executor is None:
            msg = f"the reading segments in {self.folder} are not open; call open() first"
            raise SinkError(msg)
        while self._writing and self._writing[0].done():
            self._collect_oldest()
        self._collect_merge(wait=False)
        self._expire()
        self._remove_superseded(time.monotonic())
        self._start_merge()
        pending = list(self._writing)
        if not pending and not self._unsynced:
            return _nothing
        self._unsynced = False  # the sync below covers what is collected so far
        synced = self._executor.submit(sync_folder, self.folder)

        def wait() -> None:
            for future in pending:
                self._written(future)
            synced.result()

        return wait

    def restore(self, positions: Mapping[int, int]) -> None:
        """Drop readings after these positions; partitions not listed keep all of theirs.

        A segment that straddles its partition's position is rewritten with the rows up to
        it, under its own sequence: a crash midway leaves the old file beside the new one,
        and the restore after it (from the same checkpoint) rewrites and drops it again.
        """
        self._settle()
        try:
            self._collect_merge(wait=True)
            self._remove_superseded(None)
            self._sync()  # merged inputs are gone for good before what holds them changes
            for path, stored in sorted(self._stored.items()):
                segment = stored.segment
                kept = positions.get(segment.partition)
                if kept is None:
                    continue  # not this restore's partition (another worker's, perhaps)
                if segment.first > kept:
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
        """Wait for the segments being written and the merge under way, then stop the threads.

        The inputs of merges done are removed now, grace or not.
        """
        try:
            self._settle()
            self._collect_merge(wait=True)
            self._remove_superseded(None)
            self._sync()
        finally:
            for executor in (self._executor, self._merger):
                if executor is not None:
                    executor.shutdown(wait=True, cancel_futures=True)
            self._executor = self._merger = None
            self._merging = None

    # -- writing ---------------------------------------------------------------------------
    def _settle(self) -> None:
        """Collect every write and a finished merge; apply the retention; sync the folder."""
        while self._writing:
            self._collect_oldest()
        self._collect_merge(wait=False)
        self._expire()
        self._remove_superseded(time.monotonic())
        self._sync()

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
        return _Stored(segment, readings.height, _newest(readings))

    def _make_folder(self) -> None:
        missing = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for folder in reversed(missing):  # each new folder's entry in its parent
                sync_folder(folder.parent)
        except OSError as error:
            msg = f"cannot create {self.folder} for the readings of {self.pipeline!r}: {error}"
            raise SinkError(msg) from error

    def _written(self, future: Future[_Stored]) -> _Stored:
        """A segment's write once done (any thread); its failure as a SinkError."""
        try:
            return future.result()
        except (OSError, pl.exceptions.PolarsError) as error:
            msg = (
                f"writing readings of pipeline {self.pipeline!r} to {self.folder} failed: "
                f"{error}; the pipeline resumes from its last checkpoint when run again"
            )
            raise SinkError(msg) from error

    def _collect_oldest(self) -> None:
        stored = self._written(self._writing.popleft())
        self._stored[stored.segment.path] = stored
        self._unsynced = True

    # -- compacting --------------------------------------------------------------------------
    def _start_merge(self) -> None:
        """Start merging the oldest run of small segments due, unless a merge is under way."""
        if self.compaction is None or self._merger is None or self._merging is not None:
            return
        sizes = {stored.segment: stored.rows for stored in self._stored.values()}
        runs = plan_merges(sizes, self.compaction)
        if not runs:
            return
        run = runs[0]
        sequence, self._next_sequence = self._next_sequence, self._next_sequence + 1
        self._merging_inputs = frozenset(segment.path for segment in run)
        self._merging = self._merger.submit(self._merge, run, sequence)

    def _merge(self, run: tuple[Segment, ...], sequence: int) -> _Merged:
        """Merge a run and make the merged segment durable; runs in the compaction thread."""
        segment, rows = merge(run, sequence)
        sync_folder(self.folder)  # in place for good before any input goes
        return _Merged(_Stored(segment, rows.height, _newest(rows)), run)

    def _collect_merge(self, *, wait: bool) -> None:
        """Put a finished merge's segment in its inputs' place (waiting for it if asked)."""
        future = self._merging
        if future is None or not (wait or future.done()):
            return
        self._merging, self._merging_inputs = None, frozenset()
        try:
            merged = future.result()
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as error:
            msg = (
                f"merging reading segments of pipeline {self.pipeline!r} in {self.folder} "
                f"failed: {error}; the segments it read are still there, unmerged"
            )
            raise SinkError(msg) from error
        self._stored[merged.stored.segment.path] = merged.stored
        grace = self.compaction.grace if self.compaction is not None else timedelta(0)
        due = time.monotonic() + grace.total_seconds()
        for segment in merged.inputs:
            self._stored.pop(segment.path, None)
            self._superseded.append((due, segment))

    def _remove_superseded(self, now: float | None, within: Segment | None = None) -> None:
        """Delete merged inputs whose grace is over (all when ``now`` is None).

        ``within``: only those this segment holds, which must go before it does, or
        readers would see them again.
        """
        keep: list[tuple[float, Segment]] = []
        for due, segment in self._superseded:
            elsewhere = within is not None and not _holds(within, segment)
            if elsewhere or (now is not None and due > now):
                keep.append((due, segment))
            else:
                self._remove(segment.path)
        self._superseded = keep

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
            self._stored[shorter.path] = _Stored(shorter, rows.height, _newest(rows))
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
            merging = path in self._merging_inputs  # goes with the merged segment, later
            if stored.newest is not None and stored.newest < horizon and not merging:
                self._remove_superseded(None, within=stored.segment)
                self._sync()  # the inputs are gone for good before the segment holding them
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


def _holds(merged: Segment, segment: Segment) -> bool:
    """Whether ``segment``'s position range lies in ``merged``'s, in the same partition."""
    return (
        merged.partition == segment.partition
        and merged.first <= segment.first
        and segment.last <= merged.last
    )


def _newest(readings: pl.DataFrame) -> datetime | None:
    if TS not in readings.columns:
        return None
    newest = readings[TS].max()
    return newest if isinstance(newest, datetime) else None


def _stored(segment: Segment) -> _Stored:
    """A stored segment's rows and newest event time, from its footer (no data read)."""
    metadata = pq.read_metadata(segment.path)
    return _Stored(segment, metadata.num_rows, _newest_event_time(metadata))


def _newest_event_time(metadata: pq.FileMetaData) -> datetime | None:
    """The newest ``ts`` of a segment, from its row groups' statistics."""
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
