"""Compaction of reading segments: small segments of a partition merged into larger ones.

A pipeline writes a segment per partition per flush: a live one checkpointing every 5 s
makes some 17,000 a day, each a few thousand rows, and every query opens every file a
time range might touch (some 40 µs each in DuckDB, whatever the file holds). Compaction
merges runs of consecutive small segments (by position, so by arrival, which follows
event time closely) into one sorted by event time, in row groups of ``ROW_GROUP_ROWS``:
a range query then reads few files and skips the row groups outside it by their ``ts``
statistics.

:func:`plan_merges` says what to merge; :func:`merge` writes the merged segment.
:class:`~sensorstream.sinks.segment_writer.ReadingSegments` runs them in a thread of its
own after a flush, and removes the merged inputs a while later. The merged segment's name
holds the position range of all its inputs and a new, higher sequence, so its inputs are
superseded (:func:`~sensorstream.sinks.segments.superseded`) the moment it is renamed into
place: a reader, a restore or a crash at any point sees the inputs or the merged
segment, never both.

The policy (:class:`CompactionPolicy`), per partition: a segment of ``target_rows // 2``
rows or more is large and left alone. Consecutive small segments are grouped oldest
first, up to ``target_rows`` rows a group; a group is merged once it reaches
``target_rows // 2`` rows, or ``fan_in`` segments. A group's leading segment that
outweighs the rest waits for more, so a merged segment is merged again only with about as
many rows as it holds: each row is rewritten about log2(target_rows / (fan_in x rows per
flush)) times, and a partition keeps a few dozen small segments at most.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from sensorstream.readings import TS
from sensorstream.sinks.segments import Segment, write_segment

# DuckDB reads a row group per thread and skips one by its statistics: 8 in a full segment.
ROW_GROUP_ROWS = 131_072


@dataclass(frozen=True)
class CompactionPolicy:
    """When to merge reading segments, and how long merged inputs stay for readers.

    ``grace`` is how long a merged segment's inputs stay on disk after it is in place: a
    reader that listed them just before (a query in flight, a lazy frame of
    :func:`~sensorstream.store.scan_readings`) reads them meanwhile.
    """

    target_rows: int = 1_048_576
    fan_in: int = 8
    grace: timedelta = timedelta(seconds=60)


def plan_merges(
    segments: Mapping[Segment, int], policy: CompactionPolicy | None = None
) -> list[tuple[Segment, ...]]:
    """The runs of segments to merge, each run consecutive in one partition, oldest first.

    ``segments`` are the readable (not superseded) segments with their row counts. Two
    segments sharing a position are never merged, nor is a segment merged when its
    neighbour shares a position with it: the merged range would hold that neighbour too.

    >>> from pathlib import Path
    >>> small = {Segment(Path(f"{n}"), 0, n, n, n): 10 for n in range(1, 9)}
    >>> [[s.sequence for s in run] for run in plan_merges(small)]
    [[1, 2, 3, 4, 5, 6, 7, 8]]
    >>> del small[Segment(Path("8"), 0, 8, 8, 8)]
    >>> plan_merges(small)  # seven wait for an eighth
    []
    """
    policy = policy or CompactionPolicy()
    target_rows, fan_in = policy.target_rows, policy.fan_in
    runs: list[tuple[Segment, ...]] = []
    partitions: dict[int, list[Segment]] = {}
    for segment in segments:
        partitions.setdefault(segment.partition, []).append(segment)
    for partition in sorted(partitions):
        ordered = sorted(partitions[partition], key=lambda s: (s.first, s.sequence))
        group: list[Segment] = []
        previous: Segment | None = None
        for segment in ordered:
            rows = segments[segment]
            touching = previous is not None and segment.first <= previous.last
            if touching and group and group[-1] is previous:
                group.pop()  # the merged range would hold this segment's first position
            if touching or rows >= target_rows // 2:
                runs += _due(group, segments, target_rows, fan_in)
                group = []
            elif group and sum(segments[s] for s in group) + rows > target_rows:
                runs += _due(group, segments, target_rows, fan_in)
                group = [segment]
            else:
                group.append(segment)
            previous = segment
        runs += _due(group, segments, target_rows, fan_in)
    return runs


def _due(
    group: Sequence[Segment], rows: Mapping[Segment, int], target_rows: int, fan_in: int
) -> list[tuple[Segment, ...]]:
    """The group as a run to merge now, or nothing."""
    total = sum(rows[s] for s in group)
    if len(group) >= 2 and total >= target_rows // 2:
        return [tuple(group)]
    while len(group) >= 2 and rows[group[0]] > total - rows[group[0]]:
        total -= rows[group[0]]
        group = group[1:]  # waits for segments about its size
    return [tuple(group)] if len(group) >= max(2, fan_in) else []


def merged_segment(run: Sequence[Segment], sequence: int) -> Segment:
    """The segment a run merges into: its partition, their whole position range, a new sequence.

    >>> from pathlib import Path
    >>> run = [Segment(Path("a"), 0, 10, 19, 1), Segment(Path("b"), 0, 20, 29, 3)]
    >>> merged_segment(run, 7).path.name
    'part-0-10-29-7.parquet'
    """
    first = min(s.first for s in run)
    last = max(s.last for s in run)
    partition = run[0].partition
    folder = run[0].path.parent
    return Segment(
        folder / Segment.name(partition, first, last, sequence), partition, first, last, sequence
    )


def merge(run: Sequence[Segment], sequence: int) -> tuple[Segment, pl.DataFrame]:
    """Write the run's rows, sorted by event time, as one segment; return it and its rows.

    The caller removes the inputs once it has synced the folder: they are superseded by
    then, and a reader that listed them before keeps reading them meanwhile.
    """
    target = merged_segment(run, sequence)
    frames = [pl.read_parquet(s.path, hive_partitioning=False) for s in run]
    rows = pl.concat(frames, how="diagonal_relaxed")
    if TS in rows.columns:
        rows = rows.sort(TS, maintain_order=True)
    write_segment(rows, target.path, row_group_rows=ROW_GROUP_ROWS)
    return target, rows
