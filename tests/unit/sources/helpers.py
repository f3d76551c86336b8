"""What the file source tests share: a still clock, and reading a source to its end."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime

import polars as pl

from sensorstream.readings import ReadingFormat
from sensorstream.sources import FileSource, SourceBatch

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def read_all(
    source: FileSource, fmt: ReadingFormat, resume_after: Mapping[int, int] | None = None
) -> list[SourceBatch]:
    """Every batch the source yields after ``resume_after``, closing it afterwards."""
    with closing(source.read(fmt, resume_after or {}, clock)) as items:
        return [item for item in items if item is not None]


def readings_in(batches: list[SourceBatch], fmt: ReadingFormat) -> pl.DataFrame:
    """The batches' readings in one frame (with the format's columns even if none)."""
    return pl.concat([pl.DataFrame(schema=fmt.canonical_schema()), *(b.readings for b in batches)])
