"""The read endpoints and /compute/metrics over a stopped store, through httpx."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from sensorstream.api.app import stored_app
from sensorstream.api.auth import Auth
from sensorstream.api.queries import ARROW
from sensorstream.store import Store
from sensorstream.tokens import Token


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


def test_sql_answers_one_select_as_json_or_as_arrow_with_its_types(acting: TestClient) -> None:
    client = acting
    body = {"sql": "SELECT device_id, ts, temperature FROM readings ORDER BY ts", "limit": 3}

    as_json = client.post("/api/v1/sql", json=body)
    as_arrow = client.post("/api/v1/sql", json=body, headers={"Accept": ARROW})

    assert as_json.status_code == 200
    assert [row["temperature"] for row in as_json.json()] == [0, 1, 2]
    assert as_arrow.headers["content-type"] == ARROW
    frame = pl.read_ipc_stream(io.BytesIO(as_arrow.content))
    assert frame.height == 3
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("COPY (SELECT 1) TO '/tmp/out.csv'", "not a COPY statement"),
        ("SET threads = 1", "not a SET statement"),
        ("SELECT 1; SELECT 2", "one statement at a time"),
        ("SELEC 1", "not SQL DuckDB can parse"),
    ],
)
def test_sql_refuses_anything_but_one_read_only_statement(
    acting: TestClient, sql: str, message: str
) -> None:
    answer = acting.post("/api/v1/sql", json={"sql": sql})
    assert answer.status_code == 400
    assert message in answer.json()["detail"]


def test_the_pipelines_and_every_steps_results_as_the_query_command_shows_them(
    client: TestClient, stored: Path
) -> None:
    pipelines = client.get("/api/v1/pipelines", headers={"Accept": ARROW})
    results = client.get("/api/v1/results", params={"limit": 2}, headers={"Accept": ARROW})

    with Store(stored) as store:
        assert pl.read_ipc_stream(io.BytesIO(pipelines.content)).equals(store.command())
        expected = store.command(pipeline="sensors", limit=2)
    assert pl.read_ipc_stream(io.BytesIO(results.content)).equals(expected)


def test_sql_needs_the_admin_scope_where_reads_need_read(stored: Path) -> None:
    auth = Auth(
        [
            Token.of("reader-token-0123456789", ["read"], "reader"),
            Token.of("admin-token-01234567890", ["admin", "read"], "admin"),
        ]
    )
    app = stored_app(stored, "sensors", auth)
    reader = {"Authorization": "Bearer reader-token-0123456789"}
    admin = {"Authorization": "Bearer admin-token-01234567890"}
    with TestClient(app) as test_client:
        assert test_client.get("/api/v1/pipelines", headers=reader).status_code == 200
        body = {"sql": "SELECT 1 AS one"}
        assert test_client.post("/api/v1/sql", json=body, headers=reader).status_code == 403
        assert test_client.post("/api/v1/sql", json=body, headers=admin).json() == [{"one": 1}]
        assert test_client.get("/metrics", headers=admin).status_code == 404  # a stopped store


def test_sql_is_not_served_without_an_admin_requirement(client: TestClient) -> None:
    assert client.post("/api/v1/sql", json={"sql": "SELECT 1"}).status_code == 404
