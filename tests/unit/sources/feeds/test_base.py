"""The feed primitives: reports are a pure function of time, however time is cut."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from sensorstream.sources.feeds.base import (
    DEVICE_INDEX,
    DUE,
    REPORT,
    draws,
    iso_millis,
    repeat_some,
    schedule,
)

SECOND = 1_000_000


def test_a_draw_depends_only_on_its_seed_device_report_and_salt() -> None:
    devices, reports = np.arange(1000), np.arange(1000) * 3
    first = draws(1, devices, reports, salt=4)
    assert np.array_equal(first, draws(1, devices, reports, salt=4))
    assert not np.array_equal(first, draws(2, devices, reports, salt=4))
    assert not np.array_equal(first, draws(1, devices, reports, salt=5))
    # Order-free: each value is its own pair's, whatever else is drawn beside it.
    assert np.array_equal(first[::-1], draws(1, devices[::-1], reports[::-1], salt=4))
    assert 0.45 < first.mean() < 0.55
    assert ((first >= 0) & (first < 1)).all()


@given(
    periods=st.lists(st.integers(1, 10), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 60), max_size=6),
)
def test_a_schedule_cut_anywhere_adds_up_to_the_whole(periods: list[int], cuts: list[int]) -> None:
    periods_us = [p * SECOND for p in periods]
    phases_us = [(i * 7 % p) * SECOND for i, p in enumerate(periods)]
    whole = schedule(periods_us, phases_us, 0, 60 * SECOND)
    edges = [0, *sorted(c * SECOND for c in cuts), 60 * SECOND]
    parts = pl.concat(
        [schedule(periods_us, phases_us, low, high) for low, high in itertools.pairwise(edges)]
    )
    assert parts.equals(whole)
    for device, period in enumerate(periods):
        mine = whole.filter(pl.col(DEVICE_INDEX) == device)
        assert mine.height == len(range(phases_us[device], 60 * SECOND, period * SECOND))
        assert (mine[DUE] == phases_us[device] + mine[REPORT] * period * SECOND).all()


def test_repeated_reports_follow_their_first_sending_and_are_chosen_by_their_draw() -> None:
    due = schedule([SECOND] * 10, [0] * 10, 0, 100 * SECOND)
    twice = repeat_some(due, 0.1, seed=3, salt=9)
    extra = twice.height - due.height
    assert 50 < extra < 150  # about 10 % of 1,000
    assert twice[DUE].is_sorted()
    # The same reports are repeated when the time is cut in two.
    halves = pl.concat(
        [
            repeat_some(schedule([SECOND] * 10, [0] * 10, lo, hi), 0.1, seed=3, salt=9)
            for lo, hi in ((0, 37 * SECOND), (37 * SECOND, 100 * SECOND))
        ]
    )
    assert halves.equals(twice)
    assert repeat_some(due, 0.0, seed=3, salt=9).equals(due)


def test_times_are_written_as_iso_8601_utc_with_milliseconds() -> None:
    frame = pl.DataFrame({"t": [1_715_480_297_250_000]})
    assert frame.select(iso_millis(pl.col("t")))["t"].to_list() == ["2024-05-12T02:18:17.250Z"]
