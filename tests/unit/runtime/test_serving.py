"""A running pipeline's one server: ingest beside queries, its alerts and actions, /metrics."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.cli.commands import app
from sensorstream.engine.rules.lifecycle import ALERT_STATES
from sensorstream.errors import ConfigError
from sensorstream.pipeline.api import ApiSpec
from sensorstream.pipeline.spec import (
    CheckpointSpec,
    PipelineSpec,
    ReadingsSpec,
    StreamSpec,
    parse_spec,
)
from sensorstream.runtime.runner import Runner
from sensorstream.runtime.serving import PipelineServer, check_served
from sensorstream.sinks import DuckDBSink
from sensorstream.sources import HttpSourceSettings
from sensorstream.testing import ListSink, ListSource, ManualClock
from sensorstream.tokens import TokenSettings
from tests.unit.runtime.test_metrics import ALERTING, alerting_spec
from tests.unit.runtime.test_runner import START

GATEWAY, READER = "gateway-token-0123456789", "reader-token-0123456789"


def pipeline(**changes: object) -> PipelineSpec:
    spec = PipelineSpec(
        name="posted",
        source=HttpSourceSettings(),
        readings=ReadingsSpec(measurements={"temperature": "float"}),
        checkpoint=CheckpointSpec(interval=timedelta(milliseconds=50)),
    )
    return spec.model_copy(update=changes)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Runner, ListSink, PipelineServer]]:
    """A pipeline of two http streams, running, its API on a free port."""
    spec = pipeline(
        streams={
            "doors": StreamSpec(
                source=HttpSourceSettings(),
                readings=ReadingsSpec(measurements={"open": "float"}),
            )
        },
        api=ApiSpec(
            tokens=(
                TokenSettings(token_env="GATEWAY", scopes=("ingest",)),
                TokenSettings(token_env="READER", scopes=("read",)),
            )
        ),
    )
    sink = ListSink()
    runner = Runner(spec, sinks=[sink], checkpoint_dir=tmp_path / "checkpoints")
    server = PipelineServer(runner, port=0, environ={"GATEWAY": GATEWAY, "READER": READER})
    with server:
        thread = threading.Thread(target=runner.run)
        thread.start()
        try:
            yield runner, sink, server
        finally:
            runner.stop()
            thread.join(30)


def lines(field: str, count: int) -> str:
    now_ms = int(time.time() * 1000)
    return "".join(
        json.dumps({"device_id": "d", "ts": now_ms + n, field: n}) + "\n" for n in range(count)
    )


def stored(sink: ListSink, count: int) -> pl.DataFrame:
    deadline = time.monotonic() + 10
    while sum(frame.height for _, _, frame in sink.readings) < count:
        assert time.monotonic() < deadline, "the pipeline never read what was posted"
        time.sleep(0.01)
    return pl.concat((frame for _, _, frame in sink.readings), how="diagonal")


def test_each_http_stream_takes_posts_on_the_pipelines_one_server(
    served: tuple[Runner, ListSink, PipelineServer], tmp_path: Path
) -> None:
    _, sink, server = served
    gateway = {"Authorization": f"Bearer {GATEWAY}"}
    assert server.ingest == {"readings": "/api/v1/readings", "doors": "/api/v1/streams/doors"}

    readings = httpx.post(
        f"{server.url}/api/v1/readings", content=lines("temperature", 3), headers=gateway
    )
    doors = httpx.post(
        f"{server.url}/api/v1/streams/doors", content=lines("open", 2), headers=gateway
    )

    assert (readings.status_code, readings.json()["accepted"]) == (200, 3)
    assert (doors.status_code, doors.json()["accepted"]) == (200, 2)
    got = stored(sink, 5)
    assert sorted(got["stream"].to_list()) == ["doors"] * 2 + ["readings"] * 3
    assert (tmp_path / "checkpoints.ingest-log").is_dir()
    assert (tmp_path / "checkpoints.doors.ingest-log").is_dir()


def test_the_apis_tokens_guard_ingest_and_queries_each_by_scope(
    served: tuple[Runner, ListSink, PipelineServer],
) -> None:
    _, _, server = served
    body = lines("temperature", 1)
    reader = {"Authorization": f"Bearer {READER}"}
    gateway = {"Authorization": f"Bearer {GATEWAY}"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/api/v1/readings", content=body).status_code == 401
        assert client.post("/api/v1/readings", content=body, headers=reader).status_code == 403
        assert client.get("/metrics", headers=gateway).status_code == 403
        assert client.get("/metrics", headers=reader).status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/readings", "/api/v1/streams/doors", "/api/v1/devices"} <= set(paths)


def test_tokens_are_the_api_sections_and_round_trip_through_the_yaml() -> None:
    text = """
name: posted
source: {type: http}
readings: {measurements: {temperature: float}}
api:
  port: 8080
  tokens:
    - {token_env: GATEWAY_TOKEN, scopes: [ingest]}
    - {token: a-long-text-for-the-dashboard, scopes: [read, admin]}
"""
    spec = parse_spec(text)
    assert spec.api.port == 8080
    assert [t.scopes for t in spec.api.tokens] == [("ingest",), ("read", "admin")]
    assert "a-long-text-for-the-dashboard" not in repr(spec.api)
    assert parse_spec(spec.to_yaml()) == spec


def test_a_token_env_not_set_stops_the_pipeline_before_it_serves(tmp_path: Path) -> None:
    spec = pipeline(api=ApiSpec(tokens=(TokenSettings(token_env="GATEWAY", scopes=("ingest",)),)))
    runner = Runner(spec, sinks=[], checkpoint_dir=tmp_path / "checkpoints")
    with pytest.raises(ConfigError, match=r"api.tokens\[0\].*GATEWAY"):
        PipelineServer(runner, port=0, environ={})


def test_a_stream_taking_posts_needs_the_api_served(tmp_path: Path) -> None:
    runner = Runner(pipeline(), sinks=[], checkpoint_dir=tmp_path / "checkpoints")
    with pytest.raises(ConfigError, match=r"stream readings takes posts.*drop --no-serve"):
        check_served(runner, serve=False)
    check_served(runner, serve=True)
    reads_a_log = pipeline(source=HttpSourceSettings(serve=False))
    check_served(Runner(reads_a_log, sinks=[], checkpoint_dir=tmp_path / "c2"), serve=False)


def test_run_says_when_the_port_its_streams_post_to_is_taken(tmp_path: Path) -> None:
    spec = tmp_path / "posted.yaml"
    spec.write_text(
        "name: posted\nsource: {type: http}\nreadings: {measurements: {t: float}}\n"
        f"checkpoint: {{dir: {tmp_path / 'checkpoints'}}}\n"
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = CliRunner().invoke(
            app, ["run", str(spec), "--port", str(port), "--no-progress"], env={"COLUMNS": "200"}
        )
    assert done.exit_code == 2, done.output
    assert f"cannot serve the API on 127.0.0.1:{port}" in done.output
    assert "stream readings takes its posts: choose another --port" in done.output


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
