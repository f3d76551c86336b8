from __future__ import annotations

import math
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorstream.engine import percentiles
from sensorstream.engine.aggregates import Aggregate, AggregatePlan, sketch_partials
from sensorstream.engine.task import EnginePlan, PartitionTask
from sensorstream.engine.windows import TumblingWindow, WindowStep
from sensorstream.errors import ConfigError
from sensorstream.testing import readings_frame

ACCURACY = 0.0101  # the sketch's 1 %, plus rounding at bucket edges
GROUP = ["key", "window_start"]
QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999)
magnitudes = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


def close(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= ACCURACY * abs(exact) + 1e-9


def sketch(values: list[float | None], keys: list[str | None] | None = None) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "key": keys or ["k"] * len(values),
            "window_start": [0] * len(values),
            "v": values,
        },
        schema={"key": pl.String, "window_start": pl.Int64, "v": pl.Float64},
    )
    built = sketch_partials(frame, GROUP, AggregatePlan((Aggregate("p50", "v"),)))
    assert built is not None
    return built


def estimates(sketched: pl.DataFrame, qs: tuple[float, ...] = QUANTILES) -> dict[float, float]:
    outputs = [("v", f"q{i}", q) for i, q in enumerate(qs)]
    [row] = percentiles.quantiles(sketched, GROUP, outputs).to_dicts()
    return {q: row[f"q{i}"] for i, q in enumerate(qs)}


def represent(values: list[float]) -> list[float]:
    """The value each one's bucket stands for."""
    code = percentiles.bucket(pl.col("v"))
    frame = pl.DataFrame({"v": values}, schema={"v": pl.Float64})
    return frame.select(percentiles.representative(code).alias("v"))["v"].to_list()


def exact(values: list[float], q: float) -> float:
    return sorted(values)[math.floor(q * (len(values) - 1))]


@given(value=magnitudes)
def test_bucket_value_is_within_the_relative_accuracy(value: float) -> None:
    [represented] = represent([value])
    assert close(represented, value)


@pytest.mark.parametrize("value", [0.0, -0.0, 1e-10, -1e-10])
def test_zero_and_tiny_values_share_the_zero_bucket(value: float) -> None:
    assert represent([value]) == [0.0]


@settings(deadline=None)
@given(values=st.lists(magnitudes, min_size=1, max_size=200))
def test_quantile_estimates_the_value_of_rank_floor_q_times_n_minus_1(values: list[float]) -> None:
    for q, estimate in estimates(sketch(list(values))).items():
        assert close(estimate, exact(values, q)), (q, estimate, exact(values, q))


def test_negative_values_keep_their_order() -> None:
    found = estimates(sketch([-5.0, -1.0, 3.0, -100.0]), (0.0, 0.5, 0.999))
    assert found[0.0] == pytest.approx(-100.0, rel=ACCURACY)
    assert found[0.5] == pytest.approx(-5.0, rel=ACCURACY)
    assert found[0.999] == pytest.approx(-1.0, rel=ACCURACY)


def test_nulls_are_not_values() -> None:
    found = estimates(sketch([None, 1.0, None, 100.0]), (0.0, 0.999))
    assert found[0.0] == pytest.approx(1.0, rel=ACCURACY)
    assert found[0.999] == pytest.approx(1.0, rel=ACCURACY)


@settings(deadline=None)
@given(values=st.lists(magnitudes, min_size=1, max_size=100), data=st.data())
def test_merging_sketches_equals_sketching_every_value(
    values: list[float], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(values)))
    parts = [sketch(list(values[:cut])), sketch(list(values[cut:]))]
    merged = percentiles.merge(parts, GROUP)
    assert estimates(merged) == estimates(sketch(list(values)))


def test_windows_with_a_null_key_get_one_row() -> None:
    sketched = sketch([1.0, 2.0, 3.0, 4.0], keys=[None, None, "k", "k"])
    outputs = [("v", "p0", 0.0), ("v", "p99", 0.99)]
    found = percentiles.quantiles(sketched, GROUP, outputs).sort("key", nulls_last=True)
    assert found["key"].to_list() == ["k", None]
    assert found["p0"].to_list() == pytest.approx([3.0, 1.0], rel=ACCURACY)
    assert found["p99"].to_list() == pytest.approx([3.0, 1.0], rel=ACCURACY)


@pytest.mark.parametrize(("function", "quantile"), [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)])
def test_percentile_names_give_the_quantile(function: str, quantile: float) -> None:
    assert Aggregate(function, "v").quantile == pytest.approx(quantile)


@pytest.mark.parametrize("function", ["p100", "p", "median", "p-1"])
def test_unknown_percentile_names_are_rejected(function: str) -> None:
    with pytest.raises(ConfigError, match="unknown aggregate"):
        Aggregate(function, "v")


def test_window_percentiles_never_leave_the_range_of_the_values() -> None:
    plan = EnginePlan(
        measurements=("v",),
        steps=(
            WindowStep(
                "w",
                TumblingWindow(timedelta(seconds=10)),
                ("device_id",),
                (Aggregate("p90", "v"), Aggregate("p0", "v"), Aggregate("max", "v")),
            ),
        ),
    )
    task = PartitionTask(plan)
    # 21.78 falls in a bucket whose representative is above 21.78 itself.
    rows: list[dict[str, str | int | float]] = [
        {"device_id": "d", "ts": i * 1_000_000, "v": 21.78 - i * 0.001} for i in range(5)
    ]
    task.process(readings_frame(rows, measurements=("v",)), 0)
    [result] = task.finish().results["w"].to_dicts()
    assert result["v_p90"] <= result["v_max"] == 21.78
    assert result["v_p0"] >= 21.78 - 0.004
