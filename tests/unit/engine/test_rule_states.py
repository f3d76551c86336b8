"""The rule state pass: the vectorised pass equals a plain per-row loop on any rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray

from sensorstream.engine.rules.states import (
    CARRIED,
    FIRING_,
    LEVEL,
    NO_RUN,
    OK_,
    PENDING_,
    RUN_COUNT,
    RUN_START,
    SEVERITY,
    STATE,
    observation_states,
    run_states,
)
from sensorstream.readings import TS


def loop(
    starts: NDArray[Any],
    carried: NDArray[Any],
    level: NDArray[Any],
    ts: NDArray[Any],
    state: NDArray[Any],
    severity: NDArray[Any],
    run_start: NDArray[Any],
    run_count: NDArray[Any],
    changed: NDArray[Any],
    consecutive: int,
    hold: int,
) -> None:
    """The state machine as one reads it: row by row, each key's rows in order."""
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


# Called with a list of arrays: their dtypes are checked at run time.
PASS: Callable[..., NDArray[np.bool_]] = run_states
LOOP: Callable[..., None] = loop


def random_rows(seed: int, size: int) -> pl.DataFrame:
    """Rows of many keys, sorted as a release sorts them, some keys with a carried row."""
    rng = np.random.default_rng(seed)
    keys = np.sort(rng.integers(0, size // 8 + 1, size))
    ts = rng.integers(0, 10_000, size)
    frame = pl.DataFrame({"k": keys, TS: ts}).sort("k", TS)
    first = frame.select(pl.col("k").is_first_distinct()).to_series()
    carried = first & pl.Series(rng.random(size) < 0.5)
    return frame.with_columns(
        carried.alias(CARRIED),
        pl.Series(LEVEL, rng.integers(0, 4, size), pl.Int8),
        pl.when(carried).then(pl.Series(rng.integers(0, 3, size))).alias(STATE).cast(pl.Int8),
        pl.when(carried).then(pl.Series(rng.integers(0, 4, size))).alias(SEVERITY).cast(pl.Int8),
        pl.when(carried).then(pl.col(TS) - 5).alias(RUN_START),
        pl.when(carried).then(pl.Series(rng.integers(0, 3, size))).alias(RUN_COUNT),
    )


def arrays(frame: pl.DataFrame) -> list[NDArray[Any]]:
    run = frame["k"].to_numpy()
    starts = np.ones(frame.height, np.bool_)
    starts[1:] = run[1:] != run[:-1]
    return [
        starts,
        frame[CARRIED].to_numpy().copy(),
        frame[LEVEL].to_numpy().copy(),
        frame[TS].cast(pl.Int64).to_numpy().copy(),
        frame[STATE].fill_null(0).to_numpy().copy(),
        frame[SEVERITY].fill_null(0).to_numpy().copy(),
        frame[RUN_START].fill_null(NO_RUN).to_numpy().copy(),
        frame[RUN_COUNT].fill_null(0).to_numpy().copy(),
        np.zeros(frame.height, np.bool_),
    ]


@pytest.mark.parametrize("size", [1, 2, 17, 3000])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("consecutive", "hold"), [(1, 0), (2, 0), (3, 20), (1, 500)])
def test_the_vectorised_pass_equals_the_loop(
    size: int, seed: int, consecutive: int, hold: int
) -> None:
    frame = random_rows(seed, size)
    vectorised, looped = arrays(frame), arrays(frame)
    changed = PASS(*vectorised[:8], consecutive, hold)
    LOOP(*looped, consecutive, hold)
    for ours, theirs in zip([*vectorised[:8], changed], looped, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_frame_with_no_key_is_one_run_of_rows() -> None:
    frame = random_rows(3, 500).with_columns(
        pl.lit(0).alias("k"), pl.col(CARRIED) & (pl.int_range(pl.len()) == 0)
    )
    result = observation_states(frame.drop("k"), [], consecutive=2, hold_us=30)
    expected = arrays(frame)
    LOOP(*expected, 2, 30)
    np.testing.assert_array_equal(result.state, expected[4])
    np.testing.assert_array_equal(result.changed, expected[8])


def test_a_carried_row_continues_its_run_and_a_new_key_starts_clean() -> None:
    frame = pl.DataFrame(
        {
            "k": ["a", "a", "a", "b"],
            TS: [0, 10, 20, 15],
            CARRIED: [True, False, False, False],
            LEVEL: pl.Series([1, 1, 0, 1], dtype=pl.Int8),
            STATE: pl.Series([1, None, None, None], dtype=pl.Int8),
            SEVERITY: pl.Series([1, None, None, None], dtype=pl.Int8),
            RUN_START: [0, None, None, None],
            RUN_COUNT: [1, None, None, None],
        }
    )
    result = observation_states(frame, ["k"], consecutive=2, hold_us=0)
    # a's carried run of one reaches two and fires, then clears; b starts its own run.
    assert [result.position(i) for i in range(1, 4)] == [
        (2, 1, 0, 2),
        (0, 0, None, 0),
        (1, 1, 15, 1),
    ]
    assert result.changed.tolist() == [False, True, True, True]
