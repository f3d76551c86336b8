"""The pipeline's input streams as the runner reads them: one source each, interleaved.

Each stream has its own source, record format and partitions. The runner reads them
together, always taking the next batch from the stream furthest behind in event time (the
lowest watermark, ties in declaration order). That keeps a join's two sides close in event
time, so the records a join must buffer stay few: a table announced at the start is read
before the events that need it. The choice depends only on the partitions' state, which a
checkpoint restores, so a rerun after a crash interleaves the same way. A stream whose
source ends is reported once, so its watermark can stop holding the others back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import polars as pl

from sensorstream.errors import ConfigError
from sensorstream.readings import ReadingFormat
from sensorstream.sources.base import Clock, Source, SourceBatch


@dataclass
class StreamInput:
    """One input stream: its source, its format, and where its reading stands."""

    name: str
    source: Source
    format: ReadingFormat
    items: Iterator[SourceBatch | None] | None = None
    ended: bool = False
    partitions: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.partitions = self.source.partitions()


@dataclass(frozen=True)
class Pulled:
    """What the next read gave: a stream's batch, the end of a stream, or nothing yet."""

    stream: str | None = None
    batch: SourceBatch | None = None
    ended: bool = False


class Interleaver:
    """Reads several streams' sources in event-time order; see the module docstring."""

    def __init__(self, inputs: Mapping[str, StreamInput], lag: Callable[[str], int]) -> None:
        self.inputs = inputs
        self.lag = lag  # a stream's watermark: the least over its partitions

    def open(self, positions: Mapping[str, Mapping[int, int]], clock: Clock) -> None:
        """Start every source after its checkpointed positions."""
        for name, stream in self.inputs.items():
            resume = dict(positions.get(name, {}))
            stream.items = iter(stream.source.read(stream.format, resume, clock))

    @property
    def finished(self) -> bool:
        """Every stream's source has ended."""
        return all(stream.ended for stream in self.inputs.values())

    def next(self) -> Pulled:
        """The next batch of the stream furthest behind, or that a stream ended, or nothing.

        A live source with nothing right now (``None``) lets the next stream go instead;
        when none has anything, the runner hears nothing (it ticks, then asks again).
        """
        order = sorted(
            (name for name, stream in self.inputs.items() if not stream.ended),
            key=lambda name: self.lag(name),
        )
        for name in order:
            stream = self.inputs[name]
            if stream.items is None:
                msg = "Interleaver.open() must run before next()"
                raise RuntimeError(msg)
            try:
                item = next(stream.items)
            except StopIteration:
                stream.ended = True
                return Pulled(name, ended=True)
            if item is not None:
                return Pulled(name, item)
        return Pulled()


# In a pipeline of several streams, the stored records' column naming their stream.
STREAM = "stream"


def record_schema(streams: Mapping[str, Mapping[str, pl.DataType]]) -> dict[str, pl.DataType]:
    """The stored records' columns: every stream's, and ``stream`` when there are several.

    The streams' records share the sinks' tables (readings, late readings), so a column
    two streams share must have one type.
    """
    schema: dict[str, pl.DataType] = {}
    owner: dict[str, str] = {}
    for name, columns in streams.items():
        for column, dtype in columns.items():
            if column in schema and schema[column] != dtype:
                msg = (
                    f"streams {owner[column]!r} and {name!r} both have a column "
                    f"{column!r}, as {schema[column]} and {dtype}: the stored records "
                    "share tables, so give it one type or rename it in one stream"
                )
                raise ConfigError(msg)
            schema.setdefault(column, dtype)
            owner.setdefault(column, name)
    if len(streams) > 1:
        schema[STREAM] = pl.String()
    return schema


def labelled(frame: pl.DataFrame | None, stream: str) -> pl.DataFrame | None:
    """Records of one stream with its name, as a pipeline of several stores them."""
    if frame is None:
        return None
    return frame.with_columns(pl.lit(stream, pl.String).alias(STREAM))
