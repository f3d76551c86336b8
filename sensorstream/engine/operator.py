"""The operator contract: a batch in, rows out, processing time explicit, state that can move.

An operator runs inside one partition's task and sees what its input step emitted for that
partition only, in arrival order, each row carrying the watermark that held just before it
(``__watermark``, microseconds); an operator of several inputs (a join) gets each input's
rows through :meth:`Operator.process_from`. It is told when the watermark moves without new rows
(:meth:`Operator.on_watermark`) and when processing time moves (:meth:`Operator.on_tick`:
the engine has no clock, so a processing-time rule learns the time here). Its whole state,
frames and metadata, is what :meth:`Operator.snapshot` returns and :meth:`Operator.restore`
takes back: nothing else survives a checkpoint.

What the rows it emits mean is its step's output kind (:mod:`~sensorstream.engine.outputs`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from sensorstream.engine.outputs import WATERMARK

if TYPE_CHECKING:
    from sensorstream.engine.tables import VersionedTable

__all__ = ["WATERMARK", "JSONValue", "Operator", "OperatorOutput", "OperatorState"]

JSONValue = Any  # anything json.dumps accepts


@dataclass
class OperatorState:
    """A snapshot of one operator: named frames (stored as Arrow) and small JSON metadata."""

    frames: dict[str, pl.DataFrame] = field(default_factory=dict)
    meta: dict[str, JSONValue] = field(default_factory=dict)


@dataclass
class OperatorOutput:
    """What one call produced: rows of the step's output kind, and which input rows were late.

    ``late`` is a Boolean series aligned with the input batch: the rows that came too late
    for this step to take (a time-sensitive step over a stream reports it; others leave it
    None).
    """

    rows: pl.DataFrame | None = None
    late: pl.Series | None = None
    # Input rows the step refused, each with a ``reason_code`` and ``reason`` (a join's
    # record whose key the table lacks, under ``missing: dead_letter``): stored as dead
    # letters and counted per step, never silently dropped.
    rejected: pl.DataFrame | None = None


class Operator(ABC):
    """Base of every engine operator; subclass it so mypy checks the contract where it is met."""

    name: str
    # A step of two inputs may need :meth:`on_watermark` at the end of every round that
    # moves its watermark, even one that brought it rows (the other input's rows of the
    # round came with the watermark before it); others hear of a move only without rows.
    watermark_every_round: ClassVar[bool] = False

    @abstractmethod
    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Fold a batch in; ``watermark_after`` is the partition's watermark after the batch."""

    def process_from(self, index: int, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Fold in a batch of input ``index`` (0 is the main input; a join has two).

        ``watermark_after`` is the step's watermark after the batch: the minimum over the
        streams its inputs come from. One-input operators need not override this.
        """
        if index != 0:
            msg = f"{type(self).__name__} reads one input, not input {index}"
            raise ValueError(msg)
        return self.process(batch, watermark_after)

    def bind_tables(self, tables: Mapping[str, VersionedTable]) -> None:
        """Be handed the partition's tables by name (a join finds the one it reads here)."""
        del tables

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """React to the watermark moving without new rows (idleness, end of input)."""
        del watermark
        return OperatorOutput()

    def on_tick(self, now_us: int) -> OperatorOutput:
        """React to processing time moving (after each source batch and while idle)."""
        del now_us
        return OperatorOutput()

    def snapshot(self) -> OperatorState:
        """The operator's whole state, enough to continue exactly where it stopped."""
        return OperatorState()

    def restore(self, state: OperatorState) -> None:
        """Continue from a snapshot taken by :meth:`snapshot`."""
        del state
