"""The source protocol: batches of decoded readings, each with the position to resume after.

A source reads one or more partitions. Every batch it yields carries ``position``: the
point *after* that batch, so that a source given ``resume_after={partition: position}``
continues with exactly the payloads that follow it (nothing twice, nothing skipped).
Positions are integers that grow within a partition (a byte offset, a sequence number,
a Kafka offset). A live source yields ``None`` when nothing is available right now, so the
runtime can advance idle watermarks and checkpoint; a bounded source simply ends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from sensorstream.readings import ReadingFormat

Clock = Callable[[], datetime]


@dataclass
class SourceBatch:
    """Decoded readings of one partition, with their dead letters and resume position."""

    partition: int
    position: int
    readings: pl.DataFrame
    dead_letters: pl.DataFrame
    payloads: int  # payloads consumed: len(readings) + len(dead_letters)
    total: int | None = None  # payloads or bytes in the whole input, when known (progress)


class Source(ABC):
    """Base of every source; subclass it and implement :meth:`read`."""

    name: str = "source"

    def partitions(self) -> list[int]:
        """The partitions this source reads (one, numbered 0, unless it says otherwise)."""
        return [0]

    @abstractmethod
    def read(
        self, fmt: ReadingFormat, resume_after: Mapping[int, int], clock: Clock
    ) -> Iterator[SourceBatch | None]:
        """Yield batches in order, starting after ``resume_after`` (missing: the beginning).

        ``clock`` gives the processing time used as the readings' arrival time.
        """

    def prepare(self, fmt: ReadingFormat) -> None:  # noqa: B027 - optional hook
        """Start slow set-up in the background while the sinks open; nothing by default."""

    def progress_total(self) -> int | None:
        """The size of a bounded input in position units (bytes, rows), for progress bars."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most sources hold nothing open
        """Release what the source holds open."""
