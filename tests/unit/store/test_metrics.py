"""POST /compute/metrics's contract: the iot-kafka-spark design's requests and answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.store import Store
from sensorstream.store.metrics import compute_metrics

START = datetime(2020, 1, 13, 15, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Five minutes of one sensor at 1 Hz: temperature s % 30, humidity 40 + s % 60."""
    folder = tmp_path_factory.mktemp("metrics")
    lines = [
        json.dumps(
            {
                "device_id": "sensor-1",
                "ts": (START + timedelta(seconds=s)).isoformat(),
                "temperature": s % 30,
                "humidity": 40 + s % 60,
                "pressure": 1000.0,
            }
        )
        for s in range(300)
    ]
    (folder / "r.ndjson").write_text("\n".join(lines) + "\n")
    spec = PipelineSpec.model_validate(
        {
            "name": "sensors",
            "source": {"type": "file", "path": str(folder / "r.ndjson")},
            "readings": {
                "measurements": {"temperature": "int", "humidity": "float", "pressure": "float"}
            },
            "sinks": [{"type": "duckdb", "path": str(folder / "s.duckdb")}],
            "checkpoint": {"dir": str(folder / "ckpt")},
        }
    )
    Runner(spec).run()
    with Store(folder / "s.duckdb") as opened:
        yield opened


ONE_MINUTE = {"from": "2020-01-13 15:12:00", "to": "2020-01-13 15:13:00"}


def test_the_reference_designs_request_counts_61_readings_in_one_minute(store: Store) -> None:
    request = {"temperature": ["count", "min"], "humidity": ["average", "max"], **ONE_MINUTE}
    answer = compute_metrics(store, "sensors", request)
    assert answer.status == 200
    # 15:12:00..15:13:00 inclusive: seconds 120..180 of the stream.
    seconds = range(120, 181)
    assert answer.body() == {
        "result": {
            "temperature": {"count": 61, "min": 0},
            "humidity": {
                "average": pytest.approx(sum(40 + s % 60 for s in seconds) / 61),
                "max": 99.0,
            },
        },
        "errors": [],
    }


def test_unknown_keys_and_metrics_are_listed_while_the_valid_ones_are_computed(
    store: Store,
) -> None:
    request = {
        "temperature": ["count", "min", "wrongMetric"],
        "humidity": ["mean"],
        **ONE_MINUTE,
        "wrongKey": 1,
    }
    answer = compute_metrics(store, "sensors", request)
    assert answer.status == 200
    assert answer.result["temperature"] == {"count": 61, "min": 0}
    assert answer.errors == [
        "Unexpected metric wrongMetric to compute for the sensor temperature",
        "Unexpected key wrongKey in the request body",
    ]


def test_only_unexpected_keys_is_a_400_with_an_empty_result(store: Store) -> None:
    request = {"wrong": ["wrongMetric"], **ONE_MINUTE, "wrongKey": 1}
    answer = compute_metrics(store, "sensors", request)
    assert (answer.status, answer.result) == (400, {})
    assert answer.errors == [
        "Unexpected key wrong in the request body",
        "Unexpected key wrongKey in the request body",
    ]


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ([1, 2], "must be a JSON object, got list"),
        ({"temperature": ["count"], "from": "2020-01-13T15:12:00", "to": "x"}, "YYYY-MM-DD"),
        ({"temperature": ["count"], "from": "2020-01-13 15:12:00"}, "Missing key to"),
        (
            {"temperature": ["count"], "from": "2020-01-13 15:13:00", "to": "2020-01-13 15:12:00"},
            "ends before it starts",
        ),
        ({"temperature": "count", **ONE_MINUTE}, "must be a list of metric names"),
    ],
)
def test_malformed_requests_are_a_400_that_says_why(
    store: Store, request_body: object, message: str
) -> None:
    answer = compute_metrics(store, "sensors", request_body)
    assert answer.status == 400
    assert answer.result == {}
    assert any(message in error for error in answer.errors), answer.errors


def test_a_range_without_readings_counts_zero(store: Store) -> None:
    request = {
        "pressure": ["count", "max"],
        "from": "2021-01-01 00:00:00",
        "to": "2021-01-02 00:00:00",
    }
    answer = compute_metrics(store, "sensors", request)
    assert answer.result == {"pressure": {"count": 0, "max": None}}


def test_a_name_with_sql_in_it_is_only_an_unexpected_key(store: Store) -> None:
    request = {'temperature") FROM readings; DROP TABLE readings; --': ["count"], **ONE_MINUTE}
    answer = compute_metrics(store, "sensors", request)
    assert answer.status == 400
    assert answer.errors[0].startswith("Unexpected key temperature")
