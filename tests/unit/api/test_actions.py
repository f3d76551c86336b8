"""Acknowledging and silencing over HTTP: the same actions file as the CLI, behind admin."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from sensorstream.actions.alert_actions import Acknowledgement, AlertActions
from sensorstream.api.actions import SilenceAnswer
from sensorstream.api.app import Serving, create_app
from sensorstream.api.auth import Auth
from sensorstream.store import Store
from sensorstream.tokens import Token
from tests.unit.api.conftest import opener

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"


def an_alert(stored: Path) -> str:
    with Store(stored) as store:
        return str(store.alerts("sensors")["alert_id"][0])


def test_an_acknowledgement_made_over_http_shows_in_the_alerts_and_the_file(
    acting: TestClient, actions: AlertActions, stored: Path
) -> None:
    alert_id = an_alert(stored)

    made = acting.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "on it", "by": "ana"})

    assert made.status_code == 201, made.text
    assert made.json()["by"] == "ana"
    assert set(made.json()) == {field.name for field in dataclasses.fields(Acknowledgement)}
    [kept] = actions.acknowledgements(alert_id)
    assert (kept.by, kept.note, kept.pipeline) == ("ana", "on it", "sensors")
    rows = {row["alert_id"]: row for row in acting.get("/api/v1/alerts").json()}
    assert rows[alert_id]["acknowledged_by"] == "ana"
    assert rows[alert_id]["state"] == "resolved"  # an acknowledgement changes no state
    shown = acting.get(f"/api/v1/alerts/{alert_id}").json()
    assert [a["note"] for a in shown["acknowledgements"]] == ["on it"]


def test_who_acknowledges_is_the_callers_name_unless_the_body_says(
    acting: TestClient, actions: AlertActions, stored: Path
) -> None:
    alert_id = an_alert(stored)
    assert acting.post(f"/api/v1/alerts/{alert_id}/ack", json={}).json()["by"] == "api"
    assert [a.by for a in actions.acknowledgements(alert_id)] == ["api"]


def test_acknowledging_an_unknown_alert_is_a_404_and_records_nothing(
    acting: TestClient, actions: AlertActions
) -> None:
    answer = acting.post("/api/v1/alerts/nope/ack", json={"by": "ana"})
    assert answer.status_code == 404
    assert "no alert 'nope' of pipeline 'sensors'" in answer.json()["detail"]
    assert actions.acknowledgements() == []


@pytest.mark.parametrize(
    "body",
    [{"by": ""}, {"by": "   "}, {"by": "x" * 201}, {"note": "x" * 2001}, {"who": "ana"}],
    ids=["empty by", "blank by", "long by", "long note", "unknown field"],
)
def test_an_acknowledgement_that_does_not_validate_is_a_422(
    acting: TestClient, stored: Path, body: dict[str, Any]
) -> None:
    answer = acting.post(f"/api/v1/alerts/{an_alert(stored)}/ack", json=body)
    assert answer.status_code == 422, answer.text


def test_a_silence_is_made_listed_and_ended(acting: TestClient, actions: AlertActions) -> None:
    made = acting.post(
        "/api/v1/silences",
        json={"rule": "hot", "key": {"device_id": "s1"}, "for": "1h", "note": "maintenance"},
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert set(silence) == set(SilenceAnswer.model_fields)
    assert silence["active"] is True
    assert (silence["rule"], silence["key"], silence["by"]) == ("hot", '{"device_id": "s1"}', "api")
    until = datetime.fromisoformat(silence["until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    assert [s.id for s in actions.silences()] == [silence["id"]]
    assert [s["id"] for s in acting.get("/api/v1/silences").json()] == [silence["id"]]
    alerts = acting.get("/api/v1/alerts").json()
    assert {row["silence_id"] for row in alerts} == {silence["id"]}

    ended = acting.delete(f"/api/v1/silences/{silence['id']}", params={"by": "ben"})

    assert ended.status_code == 200, ended.text
    assert (ended.json()["active"], ended.json()["ended_by"]) == (False, "ben")
    assert actions.silences() == []
    assert acting.get("/api/v1/silences").json() == []
    assert [s["id"] for s in acting.get("/api/v1/silences?all=true").json()] == [silence["id"]]
    assert {row["silence_id"] for row in acting.get("/api/v1/alerts").json()} == {None}
    again = acting.delete(f"/api/v1/silences/{silence['id']}")
    assert again.status_code == 409
    assert "already ended" in again.json()["detail"]
    assert acting.delete("/api/v1/silences/999").status_code == 404


def test_a_silence_may_end_at_a_given_time(acting: TestClient) -> None:
    until = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    made = acting.post(
        "/api/v1/silences", json={"key": {"device_id": "s1"}, "until": until.isoformat()}
    )
    assert made.status_code == 201, made.text
    assert datetime.fromisoformat(made.json()["until"]) == until
    assert made.json()["rule"] is None


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"rule": "hot"}, 422, "give either for"),
        ({"rule": "hot", "for": "1h", "until": "2999-01-01T00:00:00Z"}, 422, "give either for"),
        ({"for": "1h"}, 422, "name what to mute"),
        ({"key": {}, "for": "1h"}, 422, "name what to mute"),
        ({"rule": "hot", "for": "soon"}, 422, "for soon: invalid duration"),
        ({"rule": "hot", "for": "0s"}, 422, "for 0s: must be longer than zero"),
        ({"rule": "hot", "for": "999999999d"}, 422, "ends after the year 9999"),
        ({"rule": "hot", "until": "2999-01-01T00:00:00"}, 422, "timezone"),
        ({"rule": "hot", "until": "2001-01-01T00:00:00Z"}, 400, "is not in the future"),
        ({"key": {"device_id": ["s1"]}, "for": "1h"}, 422, "key"),
        ({"rule": "hot", "for": "1h", "fro": "x"}, 422, "fro"),
    ],
)
def test_a_silence_that_does_not_validate_says_why(
    acting: TestClient, actions: AlertActions, body: dict[str, Any], status: int, message: str
) -> None:
    answer = acting.post("/api/v1/silences", json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.text
    assert actions.silences(include_ended=True) == []


def test_writing_needs_the_admin_scope_once_tokens_are_configured(
    stored: Path, actions: AlertActions
) -> None:
    auth = Auth([Token.of(ADMIN, ["admin"], "ops"), Token.of(READER, ["read"], "dashboard")])
    app = create_app(
        Serving("sensors", opener(stored), actions=lambda: actions),
        read=[Depends(auth.require("read"))],
        admin=auth.require("admin"),
    )
    alert_id = an_alert(stored)
    ack, silence = f"/api/v1/alerts/{alert_id}/ack", {"rule": "hot", "for": "1h"}
    as_reader = {"Authorization": f"Bearer {READER}"}
    as_admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert client.post(ack, json={}).status_code == 401
        assert client.post("/api/v1/silences", json=silence).status_code == 401
        assert client.delete("/api/v1/silences/1").status_code == 401
        refused = client.post(ack, json={}, headers=as_reader)
        assert refused.status_code == 403
        assert "not 'admin'" in refused.json()["detail"]
        assert client.post("/api/v1/silences", json=silence, headers=as_reader).status_code == 403
        assert actions.acknowledgements() == []
        assert actions.silences() == []

        assert client.post(ack, json={}, headers=as_admin).json()["by"] == "ops"
        made = client.post("/api/v1/silences", json=silence, headers=as_admin)
        assert made.json()["by"] == "ops"
        assert client.get("/api/v1/silences", headers=as_reader).status_code == 200
        assert client.get("/api/v1/silences", headers=as_admin).status_code == 403
        ended = client.delete(f"/api/v1/silences/{made.json()['id']}", headers=as_admin)
        assert ended.json()["ended_by"] == "ops"


def test_without_an_admin_guard_the_writes_are_not_served(
    stored: Path, actions: AlertActions
) -> None:
    app = create_app(Serving("sensors", opener(stored), actions=lambda: actions))
    with TestClient(app) as client:
        assert client.get("/api/v1/silences").status_code == 200
        made = client.post("/api/v1/silences", json={"rule": "hot", "for": "1h"})
        assert made.status_code == 405
        assert client.post(f"/api/v1/alerts/{an_alert(stored)}/ack", json={}).status_code == 404
    assert actions.silences() == []


def test_the_openapi_document_describes_the_bodies(acting: TestClient) -> None:
    document = acting.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert set(schemas["SilenceBody"]["properties"]) == {
        "rule", "key", "pipeline", "for", "until", "note", "by",
    }  # fmt: skip
    assert schemas["AcknowledgementBody"]["properties"]["by"]["anyOf"][0]["maxLength"] == 200
    ack = document["paths"]["/api/v1/alerts/{alert_id}/ack"]["post"]
    assert ack["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "AcknowledgementBody"
    )
