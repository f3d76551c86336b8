"""The SSE stream: events as published, resumed with Last-Event-ID; /metrics served."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sensorstream.api.live import events_router, metrics_router
from sensorstream.runtime.runner import Runner
from sensorstream.sinks.live import LiveHub
from sensorstream.testing import ListSink, ListSource
from tests.unit.runtime.test_runner import BATCHES, spec


def read_events(client: TestClient, count: int, **headers: str) -> list[tuple[str, str]]:
    """The first ``count`` events of the stream, as (id, event) pairs."""
    found: list[tuple[str, str]] = []
    with client.stream(
        "GET", "/api/v1/events?since=0" if not headers else "/api/v1/events", headers=headers
    ) as stream:
        event_id = ""
        for line in stream.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                found.append((event_id, line[7:]))
                if len(found) == count:
                    break
    return found


def test_events_stream_in_order_and_resume_after_the_last_seen_id() -> None:
    hub = LiveHub()
    app = FastAPI()
    app.include_router(events_router(hub, heartbeat=0.05))
    hub.publish("result", [{"n": 1}, {"n": 2}])
    hub.publish("alert", [{"state": "firing"}])
    with TestClient(app) as client:
        assert read_events(client, 3) == [("1", "result"), ("2", "result"), ("3", "alert")]
        assert read_events(client, 1, **{"Last-Event-ID": "2"}) == [("3", "alert")]


def test_metrics_are_served_in_prometheus_format(tmp_path: Path) -> None:
    runner = Runner(spec(tmp_path), source=ListSource(BATCHES), sinks=[ListSink()])
    runner.run()
    app = FastAPI()
    app.include_router(metrics_router(runner.metrics))
    with TestClient(app) as client:
        scraped = client.get("/metrics")
    assert scraped.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(scraped.text)}
    assert {"sensorstream_lines", "sensorstream_batch_latency_seconds"} <= names


def test_closing_the_hub_ends_every_stream_and_an_earlier_runs_id_replays_all() -> None:
    hub = LiveHub()
    app = FastAPI()
    app.include_router(events_router(hub, heartbeat=5))
    hub.publish("result", [{"n": 1}, {"n": 2}])
    with TestClient(app) as client:
        assert read_events(client, 2, **{"Last-Event-ID": "900"}) == [
            ("1", "result"),
            ("2", "result"),
        ]
        closer = threading.Timer(0.2, hub.close)
        closer.start()
        started = time.monotonic()
        with client.stream("GET", "/api/v1/events") as stream:
            lines = list(stream.iter_lines())  # ends when the hub closes, not at a heartbeat
        assert time.monotonic() - started < 3
        assert lines[0] == ": connected"
        assert hub.after(2, timeout=5) == ([], None)  # no wait once closed
