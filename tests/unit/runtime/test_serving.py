"""A running pipeline's API: its alerts, acting on them, and /metrics, all while it runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.engine.rules.lifecycle import ALERT_STATES
from sensorstream.runtime.runner import Runner
from sensorstream.runtime.serving import PipelineServer
from sensorstream.sinks import DuckDBSink
from sensorstream.testing import ListSource, ManualClock
from tests.unit.runtime.test_metrics import ALERTING, alerting_spec
from tests.unit.runtime.test_runner import START


def alert_gauge(text: str) -> dict[str, float]:
    """``sensorstream_alerts`` of rule hot, by state."""
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "sensorstream_alerts"]
    return {s.labels["state"]: s.value for s in family.samples if s.labels["rule"] == "hot"}


def test_a_running_pipeline_serves_its_alerts_the_actions_on_them_and_their_gauges(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.duckdb"
    looks: list[tuple[dict[str, float], list[dict[str, Any]]]] = []
    acted: dict[str, Any] = {}

    def look() -> None:  # the runner waits meanwhile: its last batch is flushed
        with httpx.Client(base_url=server.url, timeout=10) as client:
            alerts = client.get("/api/v1/alerts").json()
            looks.append((alert_gauge(client.get("/metrics").text), alerts))
            if len(looks) == 2:
                firing = next(a["alert_id"] for a in alerts if a["state"] == "firing")
                acked = client.post(f"/api/v1/alerts/{firing}/ack", json={"note": "on it"})
                muted = client.post("/api/v1/silences", json={"rule": "hot", "for": "1h"})
                acted.update(
                    firing=firing,
                    acked=acked.status_code,
                    muted=muted.status_code,
                    after=client.get("/api/v1/alerts").json(),
                )

    runner = Runner(
        alerting_spec(tmp_path),
        source=ListSource(ALERTING, on_idle=look),
        sinks=[DuckDBSink(path)],
        clock=ManualClock(START),
    )
    server = PipelineServer(runner, port=0, environ={})
    with server:
        runner.run()

    assert len(looks) == 2
    for gauge, alerts in looks:
        states = Counter(a["state"] for a in alerts)
        assert gauge == {s: float(states[s]) for s in ALERT_STATES}
    assert looks[-1][0]["flapping"] == 1
    assert (acted["acked"], acted["muted"]) == (201, 201)
    after = {a["alert_id"]: a for a in acted["after"]}
    assert after[acted["firing"]]["acknowledged_by"] == "api"
    assert all(a["silence_id"] is not None for a in after.values())
    actions = AlertActions.beside(path)
    assert [a.alert_id for a in actions.acknowledgements()] == [acted["firing"]]
    assert [s.rule for s in actions.silences()] == ["hot"]
