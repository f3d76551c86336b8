"""Delayed reports: sent later than taken, each exactly once however time is cut."""

from __future__ import annotations

import itertools

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.sources.feeds.base import DEVICE_INDEX, DUE, EVENT, REPORT, delay_some, schedule

SECOND = 1_000_000
END = 120 * SECOND


def _sent(low: int, high: int, fraction: float, max_delay_us: int, seed: int) -> pl.DataFrame:
    return delay_some(
        [SECOND, 3 * SECOND],
        [0, SECOND // 2],
        low,
        high,
        fraction=fraction,
        max_delay_us=max_delay_us,
        seed=seed,
        salt=7,
    )


@settings(deadline=None)
@given(
    cuts=st.lists(st.integers(0, END // SECOND), max_size=8),
    fraction=st.floats(0, 1),
    max_delay_s=st.integers(0, 90),
    seed=st.integers(0, 2**31),
)
def test_a_delayed_schedule_cut_anywhere_adds_up_to_the_whole(
    cuts: list[int], fraction: float, max_delay_s: int, seed: int
) -> None:
    whole = _sent(0, END, fraction, max_delay_s * SECOND, seed)
    edges = [0, *sorted(c * SECOND for c in cuts), END]
    parts = pl.concat(
        [
            _sent(lo, hi, fraction, max_delay_s * SECOND, seed)
            for lo, hi in itertools.pairwise(edges)
        ]
    )
    assert parts.equals(whole)
    assert whole[DUE].is_sorted()
    # Sent once each: no report twice, none sent before it was taken or past the delay.
    assert whole.select(DEVICE_INDEX, REPORT).is_unique().all()
    delay = whole[DUE] - whole[EVENT]
    assert (delay >= 0).all()
    assert (delay <= max_delay_s * SECOND).all()
    assert (delay % 1000 == 0).all()


def test_the_reports_held_back_are_about_the_fraction_asked_and_late_by_up_to_the_delay() -> None:
    sent = delay_some(
        [SECOND], [0], 0, 3600 * SECOND, fraction=0.1, max_delay_us=60 * SECOND, seed=3, salt=1
    )
    held = sent.filter(pl.col(DUE) > pl.col(EVENT))
    assert 250 < held.height < 470  # about 10 % of 3,600
    delays = ((held[DUE] - held[EVENT]) / SECOND).to_list()
    assert 20 < sum(delays) / len(delays) < 40  # uniform up to a minute
    # Every report taken in [60 s, 3540 s) is sent within the hour: none lost, none made up.
    taken = schedule([SECOND], [0], 60 * SECOND, 3540 * SECOND)[REPORT]
    assert taken.is_in(sent[REPORT].implode()).all()
    # Held-back reports arrive out of order.
    assert not sent[EVENT].is_sorted()


def test_nothing_is_delayed_without_a_fraction_or_a_delay() -> None:
    plain = schedule([SECOND], [0], 0, 60 * SECOND)
    for fraction, max_delay_us in ((0.0, 10 * SECOND), (0.5, 0)):
        sent = delay_some(
            [SECOND],
            [0],
            0,
            60 * SECOND,
            fraction=fraction,
            max_delay_us=max_delay_us,
            seed=1,
            salt=1,
        )
        assert sent.select(DEVICE_INDEX, REPORT, DUE).equals(plain)
        assert sent[EVENT].equals(sent[DUE].alias(EVENT))
