"""The source protocol: batches of decoded readings, each with the position to resume after.

A source reads one or more partitions. Every batch it yields carries ``position``: the
point *after* that batch, so that a source given ``resume_after={partition: position}``
continues with exactly the payloads that follow it (nothing twice, nothing skipped).
Positions are integers that grow within a partition (a byte offset, a sequence number,
a Kafka offset). A live source yields ``None`` when nothing is available right now, so the
runtime can advance idle watermarks and checkpoint; a bounded source simply ends.

A position only means something for the input it was taken from, so a source says what it
reads (:meth:`Source.identity`, recorded with every checkpoint) and whether that input is
still the one a checkpoint saw (:meth:`Source.compare`): a file replaced by another must not
be resumed at the old byte offset.

A source that keeps files of its own (the HTTP source's ingest log) hears where the
pipeline keeps its checkpoints (:meth:`Source.use_checkpoint_dir`), and every source hears
when a checkpoint is saved (:meth:`Source.checkpointed`): the input before those positions
will not be read again, so a log may delete it.

Most sources read a fixed set of partitions, all of them from the start. A source in a
consumer group (Kafka) is handed partitions and has them taken away while it runs: it is
:attr:`Source.dynamic`, lists every partition its input has in :meth:`Source.partitions`
(so a pipeline can check co-partitioning), and tells the runner of each change through
the :class:`PartitionListener` it is given (:meth:`Source.listen`) *before* it yields
anything of a new partition and before it lets a revoked one go: the runner restores an
assigned partition's state and answers where to resume it, and checkpoints a revoked one
first, so the next owner continues exactly where this one stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from sensorstream.readings import ReadingFormat

Clock = Callable[[], datetime]
Identity = dict[str, Any]  # JSON values only: it is stored in the checkpoint's manifest


@dataclass(frozen=True)
class InputChange:
    """How a source's input differs from what a checkpoint recorded.

    ``grown`` means the old input is still there, with more after it (a log file appended
    to): resuming is safe. Otherwise the input was replaced or rewritten, and the recorded
    positions point into something else. ``description`` says what changed, for a person.
    """

    description: str
    grown: bool = False


@dataclass
class SourceBatch:
    """Decoded readings of one partition, with their dead letters and resume position."""

    partition: int
    position: int
    readings: pl.DataFrame
    dead_letters: pl.DataFrame
    payloads: int  # payloads consumed: len(readings) + len(dead_letters)
    total: int | None = None  # payloads or bytes in the whole input, when known (progress)
    blank: int = 0  # blank lines consumed: no payload, but every line is accounted for
    done: int | None = None  # progress in the units of ``total``, when not ``position``
    # When the batch's records arrived (microseconds since the epoch), where a live source
    # knows (an HTTP request's acceptance); the runner's latency figures start there.
    arrived_us: int | None = None

    @property
    def lines(self) -> int:
        """Lines (or rows, or messages) consumed: every one a payload or blank."""
        return self.payloads + self.blank


class PartitionListener(Protocol):
    """What a source in a consumer group tells the runner about its partitions."""

    def assigned(self, partitions: Sequence[int]) -> Mapping[int, int]:
        """These partitions are now this source's: the positions to resume each after.

        A partition missing from the answer has no checkpoint: read it from its beginning.
        """

    def revoked(self, partitions: Sequence[int]) -> None:
        """These partitions are being taken away: returns once their state is checkpointed."""


class Source(ABC):
    """Base of every source; subclass it and implement :meth:`read`."""

    name: str = "source"
    # Partitions are assigned and revoked while running (see the module); the runner then
    # keeps no partition but those assigned, and restores each when it arrives.
    dynamic: bool = False

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

    def listen(self, listener: PartitionListener) -> None:  # noqa: B027 - optional hook
        """Where a :attr:`dynamic` source reports assignments and revocations (before read)."""

    def identity(self) -> Identity:
        """What identifies the input, recorded with each checkpoint; nothing by default."""
        return {}

    def compare(self, recorded: Mapping[str, Any]) -> InputChange | None:
        """How the input differs from ``recorded`` (an earlier :meth:`identity`); None if not.

        By default the two identities must be equal.
        """
        if dict(recorded) == self.identity():
            return None
        return InputChange(f"the {self.name} source is not the one the checkpoint was taken of")

    def use_checkpoint_dir(self, folder: Path, stream: str) -> None:  # noqa: B027 - optional hook
        """Where the runner keeps checkpoints, and the stream this source feeds; unused by default.

        Called once, before :meth:`prepare`. A source with files of its own keeps them beside
        that folder (never inside: ``--fresh`` deletes it), named after the stream.
        """

    def checkpointed(self, positions: Mapping[int, int]) -> None:  # noqa: B027 - optional hook
        """A checkpoint holding ``positions`` is saved; nothing by default.

        This pipeline will not read the input before them again (a restart resumes after
        them), so a source that keeps its input (a log) may delete it.
        """

    def prepare(self, fmt: ReadingFormat) -> None:  # noqa: B027 - optional hook
        """Start slow set-up in the background while the sinks open; nothing by default."""

    def progress_total(self) -> int | None:
        """The size of a bounded input in position units (bytes, rows), for progress bars."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most sources hold nothing open
        """Release what the source holds open."""
