"""The rule state pass: compiled and interpreted give the same states on any rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray

from sensorstream.engine.rules import states
from sensorstream.engine.rules.states import (
    CARRIED,
    COMPILED_FROM,
    LEVEL,
    NO_RUN,
    RUN_COUNT,
    RUN_START,
    SEVERITY,
    STATE,
    observation_states,
    run_states,
)
from sensorstream.readings import TS

PASS: Callable[..., None] = run_states  # the arrays' dtypes are checked at run time
COMPILED: Callable[..., None] = numba.njit(cache=False)(run_states)


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


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("consecutive", "hold"), [(1, 0), (2, 0), (3, 20), (1, 500)])
def test_the_compiled_pass_equals_the_interpreted_one(
    seed: int, consecutive: int, hold: int
) -> None:
    frame = random_rows(seed, 3000)
    plain, compiled = arrays(frame), arrays(frame)
    PASS(*plain, consecutive, hold)
    COMPILED(*compiled, consecutive, hold)
    for ours, theirs in zip(plain, compiled, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_large_frame_takes_the_compiled_pass_and_gets_the_same_states() -> None:
    frame = random_rows(7, COMPILED_FROM * 2)
    large = observation_states(frame, ["k"], consecutive=2, hold_us=30)
    assert states._compiled is not None
    expected = arrays(frame)
    PASS(*expected, 2, 30)
    np.testing.assert_array_equal(large.state, expected[4])
    np.testing.assert_array_equal(large.severity, expected[5])
    np.testing.assert_array_equal(large.run_start, expected[6])
    np.testing.assert_array_equal(large.changed, expected[8])


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
