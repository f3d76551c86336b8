"""What steps emit: the kinds of output, their shapes, and the column names every consumer shares.

A step's output is one of three kinds:

- **stream**: rows like readings (``device_id``, ``ts``, values), each one an observation,
  appended. The readings themselves, and a derive step over them.
- **results**: keyed upserts. A row is identified by the step's key columns and
  ``window_start``; a later row with the same identity replaces it (a correction, with a
  higher ``revision``), and a row whose ``_op`` is ``delete`` retracts it. Window steps.
- **events**: append-only records, each with a deterministic id (the same input gives the
  same ids, crash or no crash). Rule steps' alert transitions.
- **table**: the latest value per key, with its versions in event time: a reference table
  loaded from outside, or a table step over a changelog stream. Only a join reads one.

Sinks dispatch on the kind; a step downstream of another sees its output as a stream of
observations either way (a result's event time is the last instant of its window).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum

import polars as pl

# Results: identity, bookkeeping.
START, END = "window_start", "window_end"
REVISION, FINAL, OP = "revision", "final", "_op"
UPSERT, DELETE = "upsert", "delete"
RESULT_BOOKKEEPING = (REVISION, FINAL, OP)

# Events: a rule's alert transitions (see sensorstream.engine.rules.lifecycle).
TRANSITION_SCHEMA: dict[str, pl.DataType] = {
    "transition_id": pl.String(),
    "alert_id": pl.String(),
    "rule": pl.String(),
    "key": pl.String(),
    "state": pl.String(),
    "previous_state": pl.String(),
    "severity": pl.String(),
    "event_time": pl.Datetime("us", "UTC"),
    "started_at": pl.Datetime("us", "UTC"),
    "value": pl.Float64(),
    "reason": pl.String(),
    "sequence": pl.Int64(),
    "kind": pl.String(),  # "transition" or "correction"
}

# Rows in flight inside a partition task: the watermark that held before each row, and
# which reading of the batch a row came from (to tell which readings were late for which step).
WATERMARK = "__watermark"
ROW = "__row"
# On results in flight (never stored): the window was opened by a reading that came after the
# watermark had passed the window's end (within the allowed lateness), so its first result
# arrives after later windows of its key. Batch-independent, as each row's watermark is.
OPENED_LATE = "__opened_late"


class OutputKind(StrEnum):
    """How a step's output rows relate to each other (see the module docstring)."""

    STREAM = "stream"
    RESULTS = "results"
    EVENTS = "events"
    TABLE = "table"


def outputs_of(shape: Shape) -> tuple[str, ...]:
    """A results shape's value columns: neither key, nor window bounds, nor bookkeeping."""
    bookkeeping = {START, END, *RESULT_BOOKKEEPING}
    return tuple(
        name
        for name in (shape.columns or {})
        if name not in shape.key and name not in bookkeeping and not name.startswith("__")
    )


@dataclass(frozen=True)
class Shape:
    """What a step's output looks like to the steps that read it: kind, columns, grouping.

    ``key`` is what the rows are grouped by (a window step's key; ``device_id`` for
    readings); ``columns`` maps each column a downstream step may name to its type, or is
    None where they are not known (an engine plan built without the readings' schema, in
    tests): then nothing is checked. ``window`` is the window a results shape's rows belong
    to, so a step comparing two results (a relation) can tell they share one; None when the
    rows are not windowed or the window is not known.
    """

    kind: OutputKind
    columns: dict[str, pl.DataType] | None = None
    key: tuple[str, ...] = ()
    # The window declaration (frozen, compared by value), not imported here: windows build
    # on this module.
    window: Hashable | None = None
    # A table whose versions follow a stream's event time (a table step): a temporal join
    # waits for that stream's watermark. A reference table's versions come from loads.
    timed: bool = False

    def missing(self, names: list[str] | tuple[str, ...], *, what: str, source: str) -> str | None:
        """Why ``what`` cannot read these columns of ``source`` (the first one missing), or None.

        >>> Shape(OutputKind.STREAM, {"ts": pl.Datetime()}).missing(
        ...     ["t"], what="its key", source="readings"
        ... )
        "its key reads 't', which readings do not have (they have: ts)"
        """
        if self.columns is None:
            return None
        absent = [name for name in names if name not in self.columns]
        if not absent:
            return None
        known = ", ".join(sorted(c for c in self.columns if not c.startswith("__")))
        they = "readings do" if source == "readings" else f"step {source!r} does"
        has = "they have" if source == "readings" else "it has"
        return f"{what} reads {absent[0]!r}, which {they} not have ({has}: {known})"
