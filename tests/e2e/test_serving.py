"""The API served by a running pipeline: queries, /metrics and live events while it runs."""

from __future__ import annotations

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
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    try:
        assert demo.stderr is not None
        announced = demo.stderr.readline()
        assert f"API: http://127.0.0.1:{port}" in announced
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
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=30)
