"""Where a DuckDB store keeps raw readings: immutable Parquet segments in a folder beside it.

The sink (:mod:`~sensorstream.sinks.segment_writer`) writes them and the store
(:mod:`~sensorstream.store.segments`) reads them; both find them through these names::

    weather.duckdb                      everything but the raw readings
    weather.duckdb.segments/
      readings/
        pipeline=<name>/                one folder per pipeline, its name percent-encoded
          part-<partition>-<first>-<last>-<sequence>.parquet

A segment holds the readings one partition delivered between two flushes: ``first`` and
``last`` are the smallest and largest source position of its rows, so restoring to a
checkpoint reads no file but the one (if any) that straddles the checkpointed position.
``sequence`` is unique within the folder and grows with each file written. A file holds
``partition``, ``position``, then the reading's columns; ``pipeline`` is its folder's,
hive-style, as DuckDB (``read_parquet(..., hive_partitioning = true)``), Polars, Arrow and
Spark read it. (A constant column in every file cost a sixth of the writing.)

A segment is written under a hidden temporary name (``.part-....parquet.tmp``), fsynced,
then renamed: a reader lists complete files only, and never sees one change.

Compaction (:mod:`~sensorstream.sinks.compaction`) merges consecutive segments of a
partition into one, under a new sequence and the position range of them all. A segment
whose position range lies within the wider range of a segment with a higher sequence of
its partition is **superseded**: its rows are in that one. :func:`list_segments` leaves
superseded segments out, so a reader counts each row once whether the merged file is
there yet or not, and the merged segment's inputs can be removed at leisure. Segments
written by flushes never supersede one another: each batch of readings has a higher
position than the last, so their ranges follow one another; compaction merges only runs
whose members and neighbours do not share a position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote

import polars as pl
import pyarrow.parquet as pq

from sensorstream.durable import sync_file
from sensorstream.readings import TS

# Arrow's writer at zstd's lowest level, dictionary-encoding every column but the reading
# time (nearly unique, and nearly sorted, so plain values compress better), measured on
# W1's readings in CPU per million rows: 70 ms for 4.3 MB. lz4 and snappy: 67 ms for 5.3
# and 6.1 MB; none: 65 ms for 7.2 MB; zstd 3: 40% more CPU for 2% less; a dictionary on the
# time too: 75 ms for 4.8 MB. Polars' writer took 100-120 ms with any codec, on more
# threads. CPU counts, not time: the writes share the cores with the pipeline.
COMPRESSION: Final = "zstd"
COMPRESSION_LEVEL: Final = 1
TEMPORARY_SUFFIX = ".tmp"
_NAME = re.compile(r"^part-(-?\d+)-(-?\d+)-(-?\d+)-(\d+)\.parquet$")
_PIPELINE_PREFIX = "pipeline="


def segments_root(store: Path) -> Path:
    """The folder of a store's segments: ``<store>.segments`` beside the DuckDB file."""
    return store.with_name(store.name + ".segments")


def readings_root(store: Path) -> Path:
    """The folder holding every pipeline's folder of reading segments."""
    return segments_root(store) / "readings"


def pipeline_folder(store: Path, pipeline: str) -> Path:
    """The folder of one pipeline's reading segments.

    >>> pipeline_folder(Path("s.duckdb"), "Cold Chain/2").as_posix()
    's.duckdb.segments/readings/pipeline=Cold%20Chain%2F2'
    """
    return readings_root(store) / (_PIPELINE_PREFIX + quote(pipeline, safe=""))


def pipeline_of(folder: Path) -> str | None:
    """The pipeline a segment folder belongs to, or None for a folder that is none.

    >>> pipeline_of(Path("x/pipeline=Cold%20Chain%2F2"))
    'Cold Chain/2'
    """
    if not folder.name.startswith(_PIPELINE_PREFIX):
        return None
    return unquote(folder.name.removeprefix(_PIPELINE_PREFIX))


@dataclass(frozen=True)
class Segment:
    """One segment file and what its name says: partition, position range, sequence."""

    path: Path
    partition: int
    first: int
    last: int
    sequence: int

    @staticmethod
    def parse(path: Path) -> Segment | None:
        """The segment a file's name describes, or None when it names no segment.

        >>> Segment.parse(Path("part-0-10-250-7.parquet")).last
        250
        """
        match = _NAME.match(path.name)
        if match is None:
            return None
        partition, first, last, sequence = (int(group) for group in match.groups())
        return Segment(path, partition, first, last, sequence)

    @staticmethod
    def name(partition: int, first: int, last: int, sequence: int) -> str:
        """The file name of a segment.

        >>> Segment.name(0, 10, 250, 7)
        'part-0-10-250-7.parquet'
        """
        return f"part-{partition}-{first}-{last}-{sequence}.parquet"


def stored_segments(folder: Path) -> list[Segment]:
    """Every complete segment file in one pipeline's folder, superseded ones included."""
    if not folder.is_dir():
        return []
    found = (Segment.parse(path) for path in folder.iterdir())
    return sorted(
        (segment for segment in found if segment is not None),
        key=lambda s: (s.partition, s.first, s.sequence),
    )


def superseded(segments: Iterable[Segment]) -> list[Segment]:
    """The segments whose rows a compacted segment holds: they lie within its range.

    A segment is superseded by one of its partition with a higher sequence whose position
    range holds its own and more. (A segment a restore shortened keeps its sequence, so
    the longer original, should a crash leave it, supersedes nothing.)

    >>> flushed = [Segment(Path(f"{n}"), 0, n * 10, n * 10 + 9, n) for n in (1, 2, 3)]
    >>> merged = Segment(Path("m"), 0, 10, 29, 4)
    >>> [s.sequence for s in superseded([*flushed, merged])]
    [1, 2]
    """
    hidden: list[Segment] = []
    partitions: dict[int, list[Segment]] = {}
    for segment in segments:
        partitions.setdefault(segment.partition, []).append(segment)
    for group in partitions.values():
        # By first position, the wider range first, then the newer: a segment's possible
        # supersessors come before it, and only those reaching its first position count.
        reaching: list[Segment] = []
        for segment in sorted(group, key=lambda s: (s.first, -s.last, -s.sequence)):
            reaching = [r for r in reaching if r.last >= segment.first]
            if any(_supersedes(r, segment) for r in reaching):
                hidden.append(segment)
            reaching.append(segment)
    return hidden


def _supersedes(newer: Segment, older: Segment) -> bool:
    """Whether ``newer`` holds ``older``'s rows (``newer`` starts no later than ``older``)."""
    wider = (newer.first, newer.last) != (older.first, older.last)
    return newer.sequence > older.sequence and newer.last >= older.last and wider


def list_segments(folder: Path) -> list[Segment]:
    """The segments to read in one pipeline's folder: complete, superseded ones left out.

    Sorted by partition, position and sequence.
    """
    stored = stored_segments(folder)
    hidden = {segment.path for segment in superseded(stored)}
    return [segment for segment in stored if segment.path not in hidden]


def segment_files(store: Path, pipeline: str | None = None) -> list[Path]:
    """Every segment file of one pipeline, or of all the store's pipelines."""
    if pipeline is not None:
        return [s.path for s in list_segments(pipeline_folder(store, pipeline))]
    root = readings_root(store)
    if not root.is_dir():
        return []
    folders = sorted(f for f in root.iterdir() if pipeline_of(f) is not None)
    return [s.path for folder in folders for s in list_segments(folder)]


def write_segment(frame: pl.DataFrame, path: Path, *, row_group_rows: int | None = None) -> None:
    """Write a segment so that it exists complete, durably, or not at all.

    The caller fsyncs the folder (:func:`sync_folder`) once for all the files it wrote.
    ``row_group_rows`` caps a row group (None: Arrow's default, a million rows).
    """
    temporary = path.with_name(f".{path.name}{TEMPORARY_SUFFIX}")
    pq.write_table(
        # String views go to Arrow as they are; the file's schema is Parquet's alone, so a
        # reader sees plain strings whatever wrote the segment (Arrow, Polars or DuckDB).
        frame.to_arrow(compat_level=pl.CompatLevel.newest()),
        temporary,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        # pyarrow takes a list of columns here; its stubs only know bool.
        use_dictionary=[column for column in frame.columns if column != TS],  # type: ignore[arg-type]
        store_schema=False,
        row_group_size=row_group_rows,
    )
    sync_file(temporary)
    temporary.replace(path)


def remove_temporaries(folder: Path) -> None:
    """Delete half-written segments a killed process left behind (no reader lists them)."""
    if folder.is_dir():
        for path in folder.glob(f".*{TEMPORARY_SUFFIX}"):
            path.unlink(missing_ok=True)
