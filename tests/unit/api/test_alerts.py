"""GET /api/v1/alerts (filters, acknowledgements, silences) and one alert's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.api.app import Serving, create_app
from sensorstream.sinks import DuckDBSink
from sensorstream.store import Store
from tests.unit.api.conftest import opener
from tests.unit.sinks.webhook_helpers import PIPELINE, batch, info, transition

SCRIPT = "<script>alert('x')</script>"
TAG = "<img src=x onerror=alert(1)>"  # no slash: an alert id goes in the path


def stored_alerts(path: Path) -> list[dict[str, Any]]:
    with Store(path) as store:
        return store.alerts("sensors").to_dicts()


def test_alerts_come_with_their_latest_acknowledgement_and_the_silence_in_effect(
    acting: TestClient, actions: AlertActions
) -> None:
    listed = acting.get("/api/v1/alerts").json()
    first, last = listed[0]["alert_id"], listed[-1]["alert_id"]
    actions.acknowledge(first, by="ana", note="seen", pipeline="sensors")
    actions.acknowledge(first, by="ben", note="on it", pipeline="sensors")
    silence = actions.silence(until=datetime.now(UTC) + timedelta(hours=1), by="cy", rule="hot")

    rows = {row["alert_id"]: row for row in acting.get("/api/v1/alerts").json()}

    assert rows[first]["acknowledged_by"] == "ben"
    assert rows[first]["acknowledged_at"].startswith(str(datetime.now(UTC).year))
    assert rows[last]["acknowledged_by"] is None
    assert {row["silence_id"] for row in rows.values()} == {silence.id}
    assert all(row["silenced_until"] for row in rows.values())


def test_an_app_without_actions_shows_the_columns_empty(client: TestClient) -> None:
    rows = client.get("/api/v1/alerts").json()
    assert rows
    assert {row["acknowledged_by"] for row in rows} == {None}
    assert {row["silence_id"] for row in rows} == {None}


def test_alerts_filter_by_key_values(client: TestClient) -> None:
    everything = client.get("/api/v1/alerts").json()
    mine = client.get("/api/v1/alerts", params={"key": '{"device_id": "s1"}'}).json()
    others = client.get("/api/v1/alerts", params={"key": '{"device_id": "s2"}'}).json()
    assert len(mine) == len(everything) > 0
    assert others == []


@pytest.mark.parametrize(
    "key",
    ['{"device_id": ', "[]", "{}", '{"device_id": ["s1"]}'],
    ids=["broken", "an array", "empty", "a list value"],
)
def test_a_key_that_is_no_object_of_values_is_a_400_saying_so(client: TestClient, key: str) -> None:
    answer = client.get("/api/v1/alerts", params={"key": key})
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(f"key {key}:")


def test_alerts_filter_by_the_time_of_their_latest_transition(
    client: TestClient, stored: Path
) -> None:
    with Store(stored) as store:
        changed: list[datetime] = sorted(store.alerts("sensors")["event_time"])
    middle = changed[len(changed) // 2]
    since = client.get("/api/v1/alerts", params={"since": middle.isoformat()}).json()
    until = client.get("/api/v1/alerts", params={"until": middle.isoformat()}).json()
    assert [r["event_time"] for r in since] == [t.isoformat() for t in changed if t >= middle]
    assert [r["event_time"] for r in until] == [t.isoformat() for t in changed if t < middle]
    naive = client.get("/api/v1/alerts", params={"since": "2020-01-13T15:00:00"})
    assert naive.status_code == 400
    assert "has no time zone" in naive.json()["detail"]


def test_an_unknown_state_is_refused_listing_the_states(client: TestClient) -> None:
    answer = client.get("/api/v1/alerts", params={"state": "burning"})
    assert answer.status_code == 422
    assert "'pending', 'firing', 'flapping' or 'resolved'" in answer.text
    firing = client.get("/api/v1/alerts", params={"state": "firing"}).json()
    assert {row["state"] for row in firing} == {"firing"}


def test_one_alert_shows_its_transitions_and_acknowledgements(
    acting: TestClient, actions: AlertActions, stored: Path
) -> None:
    resolved = next(row for row in stored_alerts(stored) if row["state"] == "resolved")
    alert_id = str(resolved["alert_id"])
    actions.acknowledge(alert_id, by="ana", note="looked", pipeline="sensors")

    shown = acting.get(f"/api/v1/alerts/{alert_id}").json()

    assert shown["pipeline"] == "sensors"
    assert shown["alert"]["state"] == "resolved"
    assert shown["alert"]["acknowledged_by"] == "ana"
    assert [t["state"] for t in shown["transitions"]] == ["firing", "resolved"]
    assert [(a["by"], a["note"]) for a in shown["acknowledgements"]] == [("ana", "looked")]
    assert shown["silences"] == []
    assert shown["deliveries"] == []


def test_an_unknown_alert_is_a_404_saying_where_to_look(client: TestClient) -> None:
    answer = client.get("/api/v1/alerts/nope")
    assert answer.status_code == 404
    assert "GET /api/v1/alerts lists them" in answer.json()["detail"]


def test_strings_from_data_come_back_as_json_strings_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.duckdb"
    sink = DuckDBSink(path)
    sink.open(info())
    sink.write(batch(1, transition(TAG, 0, "firing", device=SCRIPT)))
    sink.close()
    actions = AlertActions.beside(path)
    actions.acknowledge(TAG, by=SCRIPT, note=SCRIPT, pipeline=PIPELINE)
    app = create_app(Serving(PIPELINE, opener(path), actions=lambda: actions))

    with TestClient(app) as client:
        listed = client.get("/api/v1/alerts", params={"key": f'{{"device_id": "{SCRIPT}"}}'})
        shown = client.get(f"/api/v1/alerts/{TAG}")

    assert listed.headers["content-type"] == "application/json"
    [row] = listed.json()
    assert row["key"] == f'{{"device_id": "{SCRIPT}"}}'
    assert (row["alert_id"], row["acknowledged_by"]) == (TAG, SCRIPT)
    assert shown.json()["acknowledgements"][0]["note"] == SCRIPT
    assert shown.json()["alert_id"] == TAG
    assert shown.json()["alert"]["key"] == row["key"]
