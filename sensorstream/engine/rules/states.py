"""Each observation's alert state, from its level and its key's breach run: one pass per key.

Rows come sorted by key, then the key's carried row first (where the last release left
it), then event time. For each row the pass works out, from its level and the rows before
it of the same key:

- the **run** of consecutive breaching observations it belongs to (its start in event time
  and how many observations it has counted, carried over from the last release);
- its **state**: ``ok`` (0) if it does not breach, ``firing`` (2) if its run has
  ``consecutive`` observations and has lasted ``for``, else ``pending`` (1);
- its **severity**: its level while breaching, else 0;
- whether state or severity **changed** from the key's row before it.

A state machine per key reads like a loop, but this one needs none: a row's run is the
stretch of breaching rows it belongs to, found with a cumulative sum, and everything else
follows from the run's first row. So the pass is a few dozen NumPy operations over the
whole frame, with no per-row Python and no compiler to load, at the same cost for one key
or a million. ``tests/unit/engine/test_rule_states.py`` holds it to the plain per-row loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from sensorstream.readings import TS

# State codes of the pass, and the columns it reads and writes.
OK_, PENDING_, FIRING_ = 0, 1, 2
LEVEL = "__level"
CARRIED = "__carry"  # marks a key's carried row among the rows of a release
RUN_START, RUN_COUNT, STATE, SEVERITY = "__run_start", "__run_count", "__state", "__severity"
NO_RUN = int(np.iinfo(np.int64).min)  # the run start of an observation in no run (null)


def run_states(
    starts: NDArray[np.bool_],
    carried: NDArray[np.bool_],
    level: NDArray[np.int8],
    ts: NDArray[np.int64],
    state: NDArray[np.int8],
    severity: NDArray[np.int8],
    run_start: NDArray[np.int64],
    run_count: NDArray[np.int64],
    consecutive: int,
    hold: int,
) -> NDArray[np.bool_]:
    """The pass over rows, in place; returns which rows changed state or severity.

    ``state`` to ``run_count`` hold the carried rows' values on entry (other rows' are
    ignored; a carried row keeps its own) and every row's on return.
    """
    size = level.shape[0]
    if size == 0:
        return np.zeros(0, np.bool_)
    breaching = level > 0
    before = np.zeros(size, np.bool_)  # the row before, of the same key, breaches
    before[1:] = breaching[:-1]
    before &= ~starts
    begins = breaching & ~before  # the first row of a run (it may be a carried row)
    rows = np.flatnonzero(breaching)
    first = np.flatnonzero(begins)[np.cumsum(begins)[rows] - 1]  # each row's run's first
    from_carry = carried[first]
    counts = np.where(from_carry, run_count[first], 1) + (rows - first)
    began = np.where(from_carry, run_start[first], ts[first])
    known = began != NO_RUN
    held = known & (ts[rows] - np.where(known, began, 0) >= hold)
    fresh = ~carried  # a carried row keeps what it carried
    now_state = np.full(size, OK_, np.int8)
    now_state[rows] = np.where((counts >= consecutive) & held, FIRING_, PENDING_)
    now_start = np.full(size, NO_RUN, np.int64)
    now_start[rows] = began
    now_count = np.zeros(size, np.int64)
    now_count[rows] = counts
    state[fresh] = now_state[fresh]
    severity[fresh] = np.where(breaching, level, 0)[fresh]
    run_start[fresh] = now_start[fresh]
    run_count[fresh] = now_count[fresh]
    previous_state = np.zeros(size, np.int8)
    previous_severity = np.zeros(size, np.int8)
    previous_state[1:], previous_severity[1:] = state[:-1], severity[:-1]
    previous_state[starts], previous_severity[starts] = 0, 0
    changed: NDArray[np.bool_] = (state != previous_state) | (severity != previous_severity)
    changed[carried] = False
    return changed


@dataclass
class States:
    """The pass's result over a frame: per-row arrays, and where each key's rows are."""

    state: NDArray[np.int8]
    severity: NDArray[np.int8]
    run_start: NDArray[np.int64]
    run_count: NDArray[np.int64]
    changed: NDArray[np.bool_]
    starts: NDArray[np.bool_]  # the first row of each key
    carried: NDArray[np.bool_]

    def last_rows(self) -> NDArray[np.int64]:
        """The index of each key's last row."""
        ends = np.flatnonzero(self.starts)[1:] - 1
        return np.append(ends, self.starts.shape[0] - 1).astype(np.int64)

    def position(self, i: int) -> tuple[int, int, int | None, int]:
        """Row ``i``'s state, severity, run start (None: no run) and run count."""
        start = int(self.run_start[i])
        return (
            int(self.state[i]),
            int(self.severity[i]),
            None if start == NO_RUN else start,
            int(self.run_count[i]),
        )

    def before(self, i: int) -> tuple[int, int, int | None, int]:
        """The position of the row before ``i`` of the same key (ok if it is the first)."""
        if self.starts[i]:
            return (OK_, 0, None, 0)
        return self.position(i - 1)

    def columns(self, rows: NDArray[np.int64] | None = None) -> list[pl.Series]:
        """The state columns (of ``rows`` only, if given), run start null outside a run."""
        picked = slice(None) if rows is None else rows
        start = self.run_start[picked]
        return [
            pl.Series(STATE, self.state[picked], pl.Int8),
            pl.Series(SEVERITY, self.severity[picked], pl.Int8),
            pl.Series(RUN_START, np.where(start == NO_RUN, 0, start), pl.Int64).set(
                pl.Series(start == NO_RUN), None
            ),
            pl.Series(RUN_COUNT, self.run_count[picked], pl.Int64),
        ]


def observation_states(
    frame: pl.DataFrame, key: Sequence[str], *, consecutive: int, hold_us: int
) -> States:
    """The pass over ``frame`` (sorted by key, carried row first, then event time).

    The rule fires after ``consecutive`` breaching observations held for ``hold_us``.
    """
    size = frame.height
    if key:
        grouped = pl.struct(list(key)) if len(key) > 1 else pl.col(key[0])
        ids = frame.select(grouped.rle_id())
        run = ids.to_series().to_numpy()
        starts = np.empty(size, np.bool_)
        if size:
            starts[0] = True
            np.not_equal(run[1:], run[:-1], out=starts[1:])
    else:
        starts = np.zeros(size, np.bool_)
        if size:
            starts[0] = True
    columns = frame.select(
        pl.col(CARRIED).fill_null(False),
        pl.col(LEVEL).fill_null(0).cast(pl.Int8),
        pl.col(TS).cast(pl.Int64).fill_null(0),
        pl.col(STATE).fill_null(0).cast(pl.Int8),
        pl.col(SEVERITY).fill_null(0).cast(pl.Int8),
        pl.col(RUN_START).fill_null(NO_RUN).cast(pl.Int64),
        pl.col(RUN_COUNT).fill_null(0).cast(pl.Int64),
    )
    carried, level, ts, state, severity, run_start, run_count = (
        np.ascontiguousarray(s.to_numpy()) for s in columns.get_columns()
    )
    # to_numpy may share memory with the frame: the pass writes, so it gets its own copies.
    state, severity, run_start, run_count = (
        a.copy() for a in (state, severity, run_start, run_count)
    )
    changed = run_states(
        starts, carried, level, ts, state, severity, run_start, run_count, consecutive, hold_us
    )
    return States(state, severity, run_start, run_count, changed, starts, carried)
