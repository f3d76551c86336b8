"""The read endpoints and /compute/metrics over a stopped store, through httpx."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient


def test_devices_and_series(client: TestClient) -> None:
    devices = client.get("/api/v1/devices").json()
    assert [(d["device_id"], d["readings"]) for d in devices] == [("s1", 300)]
    series = client.get(
        "/api/v1/series",
        params={"measurement": "temperature", "every": "1m", "agg": "max"},
    ).json()
    assert [row["temperature_max"] for row in series] == [29] * 5
    bad = client.get("/api/v1/series", params={"measurement": "nope"})
    assert bad.status_code == 400
    assert "stores no measurement 'nope'" in bad.json()["detail"]


def test_results_alerts_and_dead_letters(client: TestClient) -> None:
    results = client.get("/api/v1/results/per_minute").json()
    assert [r["count"] for r in results] == [60] * 5
    assert client.get("/api/v1/results/nope").status_code == 404
    alerts = client.get("/api/v1/alerts", params={"state": "resolved"}).json()
    assert alerts
    assert {a["rule"] for a in alerts} == {"hot"}
    dead = client.get("/api/v1/dead_letters").json()
    assert base64.b64decode(dead[0]["raw"]) == b"{broken"
    by_reason = client.get("/api/v1/dead_letters/by_reason").json()
    assert by_reason == [{"reason_code": "invalid_json", "count": 1}]


def test_compute_metrics_answers_the_reference_designs_example(client: TestClient) -> None:
    answer = client.post(
        "/compute/metrics",
        json={
            "temperature": ["count", "min", "wrongMetric"],
            "from": "2020-01-13 15:12:00",
            "to": "2020-01-13 15:13:00",
            "wrongKey": 1,
        },
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "result": {"temperature": {"count": 61, "min": 0}},
        "errors": [
            "Unexpected metric wrongMetric to compute for the sensor temperature",
            "Unexpected key wrongKey in the request body",
        ],
    }
    nothing = client.post("/compute/metrics", json={"wrong": ["x"], "from": "x", "to": "y"})
    assert nothing.status_code == 400
    assert nothing.json()["result"] == {}
    broken = client.post("/compute/metrics", content=b"{not json")
    assert broken.status_code == 400
