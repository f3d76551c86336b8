"""The API served by a running pipeline: queries, /metrics and live events while it runs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e
ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
COUNT = "SELECT count(*) AS n FROM readings"
DB = ".sensorstream/demo.duckdb"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_demo_serves_its_store_metrics_and_events_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "sensorstream", "demo", "--duration", "60s", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert demo.stderr is not None
        announced = [demo.stderr.readline(), demo.stderr.readline()]
        assert f"Dashboard: http://127.0.0.1:{port}/" in announced[0]
        assert f"API: http://127.0.0.1:{port}" in announced[1]
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            lines = 0.0
            deadline = time.monotonic() + 30
            while lines == 0 and time.monotonic() < deadline:
                scraped = client.get("/metrics").text
                families = {f.name: f for f in text_string_to_metric_families(scraped)}
                lines = sum(s.value for s in families["sensorstream_lines"].samples)
                time.sleep(0.2)
            assert lines > 0
            with client.stream("GET", "/api/v1/events", params={"since": 0}) as events:
                kinds = []
                for line in events.iter_lines():
                    if line.startswith("event: "):
                        kinds.append(line[7:])
                        break
            assert kinds
            assert kinds[0] in {"result", "alert"}
            devices: list[object] = []
            while not devices and time.monotonic() < deadline:
                answer = client.get("/api/v1/devices")
                assert answer.status_code == 200, answer.text
                devices = answer.json()
                time.sleep(0.5)
            assert devices
        # The demo holds its store: `query` asks its API instead, and prints the same table.
        held = sensorstream(tmp_path, "query", "--db", DB, COUNT, "--format", "json")
        assert held.returncode == 0, held.stderr
        assert json.loads(held.stdout)[0]["n"] > 0
        results = sensorstream(tmp_path, "query", "--db", DB, "--pipeline", "demo")
        assert results.returncode == 0, results.stderr
        assert "window_start" in results.stdout
        refused = sensorstream(tmp_path, "query", "--db", DB, "DROP TABLE readings")
        assert refused.returncode == 2
        assert "read-only" in refused.stderr
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=30)
    assert not (tmp_path / f"{DB}.served.json").exists()


def test_serve_serves_a_stopped_store_until_ctrl_c(tmp_path: Path) -> None:
    ran = sensorstream(tmp_path, "demo", "--duration", "3s", "--no-serve")
    assert ran.returncode == 0, ran.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sensorstream", "serve", "--db", DB, "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert server.stderr is not None
        assert f"API: http://127.0.0.1:{port} serving pipeline demo" in server.stderr.readline()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/api/v1/devices").json()
            counted = client.post("/api/v1/sql", json={"sql": COUNT}).json()
            assert counted[0]["n"] > 0
            assert client.get("/metrics").status_code == 404  # no pipeline runs
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0


def sensorstream(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorstream", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
    )
