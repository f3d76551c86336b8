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

A state machine per key is a loop, which Polars can only express as a dozen window
expressions (milliseconds per release whatever the frame's size, most of a rule's cost).
The loop here is compiled with Numba (machine code cached on disk) for frames of
:data:`COMPILED_FROM` rows or more (:data:`COMPILED_ONCE_LOADED_FROM` once Numba is loaded,
as the NDJSON scanner does on large inputs); smaller ones run it interpreted, so a pipeline
judging a handful of rows never waits for Numba to load. Both run the same function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
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
COMPILED_FROM = 4096
COMPILED_ONCE_LOADED_FROM = 128  # once something else has loaded Numba


def run_states(
    starts: NDArray[np.bool_],
    carried: NDArray[np.bool_],
    level: NDArray[np.int8],
    ts: NDArray[np.int64],
    state: NDArray[np.int8],
    severity: NDArray[np.int8],
    run_start: NDArray[np.int64],
    run_count: NDArray[np.int64],
    changed: NDArray[np.bool_],
    consecutive: int,
    hold: int,
) -> None:
    """The pass over rows, in place.

    ``state`` to ``run_count`` hold the carried rows' values on entry (other rows' are
    ignored) and every row's on return; ``changed`` is set.
    """
    breaching = False
    before_state, before_severity = 0, 0
    current_start, current_count = NO_RUN, 0
    for i in range(level.shape[0]):
        if starts[i]:
            breaching = False
            before_state, before_severity = 0, 0
            current_start, current_count = NO_RUN, 0
        if carried[i]:
            breaching = level[i] > 0
            current_start, current_count = run_start[i], run_count[i]
            before_state, before_severity = state[i], severity[i]
            changed[i] = False
            continue
        if level[i] > 0:
            if breaching:
                current_count += 1
            else:
                current_start, current_count = ts[i], 1
            held = current_start != NO_RUN and ts[i] - current_start >= hold
            now_state = FIRING_ if current_count >= consecutive and held else PENDING_
            now_severity = level[i]
            breaching = True
        else:
            current_start, current_count = NO_RUN, 0
            now_state, now_severity = OK_, 0
            breaching = False
        state[i], severity[i] = now_state, now_severity
        run_start[i], run_count[i] = current_start, current_count
        changed[i] = now_state != before_state or now_severity != before_severity
        before_state, before_severity = now_state, now_severity


_compiled: Callable[..., None] | None = None


def _pass(rows: int) -> Callable[..., None]:
    """The compiled pass for many rows (compiled or loaded once), else the plain function."""
    global _compiled
    if rows < (COMPILED_FROM if "numba" not in sys.modules else COMPILED_ONCE_LOADED_FROM):
        return run_states
    if _compiled is None:
        import numba

        _compiled = numba.njit(cache=True, nogil=True)(run_states)
    return _compiled


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
    changed = np.zeros(size, np.bool_)
    _pass(size)(
        starts,
        carried,
        level,
        ts,
        state,
        severity,
        run_start,
        run_count,
        changed,
        consecutive,
        hold_us,
    )
    return States(state, severity, run_start, run_count, changed, starts, carried)
