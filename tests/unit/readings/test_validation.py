"""Canonical conversion and validation: the shortcuts give exactly what the row checks give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorstream.readings import ReadingFormat, decode_json_lines, validation
from sensorstream.readings.validation import to_canonical, validate

FMT = ReadingFormat(measurements={"temperature": "float", "humidity": "float", "count": "int"})
ARRIVED = datetime(2024, 1, 1, tzinfo=UTC)
NOW_MS = int(ARRIVED.timestamp() * 1000)

devices = st.one_of(st.none(), st.sampled_from(["", "a", "dev-1", "dev-22"]))
floats = st.one_of(
    st.none(), st.floats(-1e3, 1e3), st.sampled_from([float("nan"), float("inf"), -0.0])
)
# Mostly plausible epoch milliseconds, sometimes far in the future or the past.
times = st.one_of(
    st.none(),
    st.integers(NOW_MS - 10**9, NOW_MS + 10**6),
    st.sampled_from([NOW_MS + 10**10, 10**11, 0, -5]),
)
counts = st.one_of(st.none(), st.integers(-5, 5))
any_rows = st.lists(st.tuples(devices, times, floats, floats, counts), max_size=30)
# Batches of plausible readings, which the shortcut should settle (unless a row happens to
# have no measurement at all).
plausible_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "dev-1", "dev-22"]),
        st.integers(NOW_MS - 10**9, NOW_MS + 10**6),
        st.one_of(st.none(), st.floats(-1e3, 1e3)),
        st.floats(-1e3, 1e3),
        counts,
    ),
    max_size=30,
)
# One defect hidden among plausible readings: what a shortcut must not miss.
defective_row = st.one_of(
    st.tuples(st.sampled_from(["", None]), st.just(NOW_MS), st.just(1.0), st.just(1.0), counts),
    st.tuples(
        st.just("a"), st.sampled_from([None, 10**11, NOW_MS + 10**10]), st.just(1.0), counts
    ).map(lambda r: (r[0], r[1], r[2], 1.0, r[3])),
    st.tuples(
        st.just("a"), st.just(NOW_MS), st.sampled_from([float("nan"), float("-inf")]), counts
    ).map(lambda r: (r[0], r[1], r[2], 1.0, r[3])),
    st.just(("a", NOW_MS, None, None, None)),
)
hidden_defect = st.builds(
    lambda good, bad, at: [*good[:at], bad, *good[at:]],
    plausible_rows,
    defective_row,
    st.integers(0, 30),
)
rows = st.one_of(plausible_rows, hidden_defect, any_rows)


def _wide(data: list[tuple[object, ...]]) -> pl.DataFrame:
    return pl.DataFrame(
        data,
        schema={
            "device_id": pl.String,
            "ts": pl.Int64,
            "temperature": pl.Float64,
            "humidity": pl.Float64,
            "count": pl.Int64,
        },
        orient="row",
    )


def _row_by_row(
    canonical: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> tuple[pl.DataFrame, pl.DataFrame]:
    with monkeypatch.context() as patch:
        patch.setattr(validation, "_surely_valid", lambda *_: False)
        return validate(canonical, FMT, ARRIVED)


@given(rows)
def test_the_statistics_shortcut_agrees_with_the_row_checks(data: list[tuple[object, ...]]) -> None:
    canonical = to_canonical(_wide(data), FMT)
    with pytest.MonkeyPatch.context() as monkeypatch:
        slow_valid, slow_reasons = _row_by_row(canonical, monkeypatch)
    valid, reasons = validate(canonical, FMT, ARRIVED)
    assert valid.equals(slow_valid)
    assert reasons.equals(slow_reasons)


@given(
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=20),
    st.sampled_from(["s", "ms", "us"]),
)
def test_whole_epoch_numbers_convert_exactly_as_the_float_path_does(
    values: list[int], unit: str
) -> None:
    fmt = ReadingFormat(measurements={"temperature": "float"}, time_unit=unit)  # type: ignore[arg-type]
    wide = pl.DataFrame({"device_id": ["d"] * len(values), "ts": values, "temperature": 1.0})
    fast = to_canonical(wide, fmt)
    slow = to_canonical(wide.with_columns(pl.col("ts").cast(pl.Float64)), fmt)
    assert fast["ts"].equals(slow["ts"])


def test_a_wholly_valid_batch_takes_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = _wide([("a", NOW_MS - 1000, 1.0, None, None), ("b", NOW_MS, None, 2.0, 3)])
    canonical = to_canonical(wide, FMT)
    assert validation._surely_valid(canonical, FMT, ARRIVED + timedelta(hours=1))
    valid, reasons = validate(canonical, FMT, ARRIVED)
    assert valid.height == 2
    assert reasons.height == 0


@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=10))
def test_the_shortcut_agrees_for_epoch_seconds_of_any_size(times: list[int | None]) -> None:
    # Seconds reach microseconds beyond year 9999 (and beyond Int64): no crash, same result.
    fmt = ReadingFormat(measurements={"temperature": "float"}, time_unit="s")
    wide = pl.DataFrame(
        {"device_id": ["d"] * len(times), "ts": times, "temperature": [1.0] * len(times)},
        schema={"device_id": pl.String, "ts": pl.Int64, "temperature": pl.Float64},
    )
    canonical = to_canonical(wide, fmt)
    valid, reasons = validate(canonical, fmt, ARRIVED)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation, "_surely_valid", lambda *_: False)
        slow_valid, slow_reasons = validate(canonical, fmt, ARRIVED)
    assert valid.equals(slow_valid)
    assert reasons.equals(slow_reasons)


def test_a_time_beyond_year_9999_becomes_a_dead_letter_not_a_crash() -> None:
    line = b'{"device_id":"a","ts":9000000000000,"temperature":1.0}\n'
    fmt = ReadingFormat(measurements={"temperature": "float"}, time_unit="s")
    decoded = decode_json_lines(line * 2, fmt, arrived_at=ARRIVED)
    assert decoded.readings.height == 0
    assert decoded.dead_letters["reason"].str.contains("in the future").all()
