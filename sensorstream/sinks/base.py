"""The sink protocol: results out, written idempotently so a replay after a crash is harmless.

The runtime calls ``open`` once, ``restore`` whenever it takes on partitions (at start, or
when a consumer group assigns them) with each one's checkpointed position, or
:data:`FROM_START` for one without a checkpoint (the sink drops anything it wrote for that
partition after the position: those batches are about to be replayed; partitions not named
are left alone, since another worker may be writing them), ``write`` for every batch,
``flush`` before each checkpoint (everything written so far must be durable once it
returns) and ``close`` at the end. Window results
are upserts keyed by the step's key columns and ``window_start``; ``_op == "delete"``
rows retract a result. Alert transitions are events keyed by ``transition_id``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl


@dataclass(frozen=True)
class StepInfo:
    """What a sink needs to know about one step's output: results (upserts) or alerts."""

    name: str
    key: tuple[str, ...]
    outputs: tuple[str, ...]
    kind: Literal["results", "alerts"] = "results"


@dataclass(frozen=True)
class PipelineInfo:
    """What a sink needs to know about the pipeline it serves."""

    name: str
    steps: tuple[StepInfo, ...]
    reading_schema: Mapping[str, pl.DataType]
    # Where the runner keeps the pipeline's checkpoints: a sink with state of its own (a
    # webhook's outbox) keeps it beside them. None when no runner says (tests).
    checkpoint_dir: Path | None = None
    # The DuckDB stores the pipeline writes: alert acknowledgements and silences live beside
    # the first (sensorstream.actions.alert_actions), so alert sinks read silences there.
    stores: tuple[Path, ...] = ()


@dataclass
class SinkBatch:
    """Everything one source batch produced, for one partition up to one position."""

    partition: int
    position: int
    readings: pl.DataFrame | None = None  # accepted readings
    dead_letters: pl.DataFrame | None = None
    late: pl.DataFrame | None = None  # late readings with a ``late_for`` column
    results: dict[str, pl.DataFrame] = field(default_factory=dict)  # step name -> results
    # Rule step name -> alert transitions (events: append-only, each with a deterministic
    # ``transition_id``; a replay after a crash may hand a sink one again: store it once).
    alerts: dict[str, pl.DataFrame] = field(default_factory=dict)
    # The partition's counters after this batch (lines, accepted, late:<step>, ...): a sink
    # that stores them keeps the latest per partition.
    counters: Mapping[str, int] | None = None


# The position of a partition about to be read from its beginning: restore forgets all of it.
FROM_START = -1


def _nothing() -> None:
    """A flush already done."""


class Sink(ABC):
    """Base of every sink; subclass it and implement :meth:`write`."""

    def open(self, pipeline: PipelineInfo) -> None:
        """Prepare to receive this pipeline's output (create tables, connect)."""
        del pipeline

    def restore(self, positions: Mapping[int, int]) -> None:
        """Forget these partitions' output after their positions; it is about to be replayed.

        A position of :data:`FROM_START` forgets all of that partition's output (results
        included); partitions not in ``positions`` keep everything.
        """
        del positions

    @abstractmethod
    def write(self, batch: SinkBatch) -> None:
        """Write one batch's output."""

    def flush(self) -> None:  # noqa: B027 - doing nothing is the right default
        """Make everything written so far durable."""

    def flush_started(self) -> Callable[[], None]:
        """Start making everything written so far durable; the call returned waits for it.

        The runner saves a checkpoint in a background thread once every sink's wait has
        returned, and goes on writing batches meanwhile (they belong to the next
        checkpoint). The wait runs in that thread. By default the flush is done here and
        now, and the wait has nothing left to do; a sink with slow durable work (fsyncs in
        a writer thread) starts it here and waits in the returned call.
        """
        self.flush()
        return _nothing

    def close(self) -> None:
        """Flush and release resources."""
        self.flush()
