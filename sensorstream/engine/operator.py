"""The operator contract: a batch of readings in, result batches out, state that can move.

An operator runs inside one partition's task and sees that partition's readings only, in
arrival order, each row carrying the watermark that held just before it arrived
(``__watermark``, microseconds). Results are upserts keyed by the operator's key columns and
``window_start``; a row whose ``_op`` is ``"delete"`` retracts an earlier result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import polars as pl

WATERMARK = "__watermark"
JSONValue = Any  # anything json.dumps accepts


@dataclass
class OperatorState:
    """A snapshot of one operator: named frames (stored as Arrow) and small JSON metadata."""

    frames: dict[str, pl.DataFrame] = field(default_factory=dict)
    meta: dict[str, JSONValue] = field(default_factory=dict)


@dataclass
class OperatorOutput:
    """What one call produced: results to upsert, and which input rows were too late."""

    results: pl.DataFrame | None = None
    late: pl.Series | None = None  # Boolean, aligned with the input batch


class Operator(ABC):
    """Base of every engine operator; subclass it so mypy checks the contract where it is met."""

    name: str

    @abstractmethod
    def process(self, batch: pl.DataFrame, watermark_after: int) -> OperatorOutput:
        """Fold a batch in; ``watermark_after`` is the partition's watermark after the batch."""

    def on_watermark(self, watermark: int) -> OperatorOutput:
        """React to the watermark moving without new readings (idleness, end of input)."""
        del watermark
        return OperatorOutput()

    def snapshot(self) -> OperatorState:
        """The operator's state, enough to continue exactly where it stopped."""
        return OperatorState()

    def restore(self, state: OperatorState) -> None:
        """Continue from a snapshot taken by :meth:`snapshot`."""
        del state
