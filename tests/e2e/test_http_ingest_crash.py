"""kill -9 while readings are posted over HTTP: every reading that got a 2xx is stored once.

A real pipeline (``sensorstream run``, HTTP source, DuckDB sink) runs in a subprocess while
clients post batches from several threads. It is killed -9 at a random moment, started
again, posted more, and stopped with Ctrl-C once it has caught up (what it has not read
when stopped stays in the log for the next run). Then every reading acknowledged with a 2xx
is in the store exactly once. A reading whose request was cut off by the kill may be stored or
not (its body may have reached the log before the process died), but never twice.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from sensorstream.sources.ingest_log import IngestLog
from sensorstream.store import Store
from sensorstream.testing.checkpoints import checkpointed_position

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BATCH = 50
CLIENTS = 3

PIPELINE = """
name: posted
source: {{type: http}}
api: {{port: {port}}}
readings: {{measurements: {{temperature: float}}}}
event_time: {{out_of_orderness: 5s}}
steps:
  - name: per_device
    window: {{type: tumbling, size: 10s}}
    aggregates: [count, mean(temperature)]
sinks:
  - {{type: duckdb, path: "{db}"}}
checkpoint: {{dir: "{checkpoints}", interval: 200ms}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Clients:
    """Threads posting batches of numbered readings until stopped; the numbers acknowledged."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.numbers = itertools.count()
        self.base_ms = int(time.time() * 1000)
        self.acknowledged: set[int] = set()
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._post) for _ in range(CLIENTS)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _post(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                with self._lock:
                    numbers = [next(self.numbers) for _ in range(BATCH)]
                body = "".join(
                    json.dumps({"device_id": f"d{n % 7}", "ts": self.base_ms + n, "temperature": n})
                    + "\n"
                    for n in numbers
                )
                try:
                    answer = client.post(self.url, content=body)
                except httpx.HTTPError:
                    with self._lock:
                        self.failed += 1
                    time.sleep(0.02)
                    continue
                if answer.status_code == 200:
                    with self._lock:
                        self.acknowledged.update(numbers)


def start(spec: Path, log: Path) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-m", "sensorstream", "run", str(spec), "--no-progress"]
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=spec.parent, env=env, stdout=output, stderr=output)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"the pipeline exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"the pipeline never served:\n{log.read_text()}"
        try:
            httpx.get(url, timeout=1)  # any answer will do (405): it serves
            return
        except httpx.HTTPError:
            time.sleep(0.05)


def wait_until_caught_up(folder: Path) -> None:
    """Wait until the checkpointed position has held still for a second (5 checkpoints)."""
    deadline = time.monotonic() + 60
    last, since = checkpointed_position(folder), time.monotonic()
    while time.monotonic() - since < 1.0:
        assert time.monotonic() < deadline, "the pipeline never caught up with the posts"
        time.sleep(0.05)
        now = checkpointed_position(folder)
        if now != last:
            last, since = now, time.monotonic()


def test_every_acknowledged_reading_is_stored_exactly_once_across_kill_9(tmp_path: Path) -> None:
    port = free_port()
    spec = tmp_path / "pipeline.yaml"
    db = tmp_path / "out.duckdb"
    spec.write_text(PIPELINE.format(port=port, db=db, checkpoints=tmp_path / "checkpoints"))
    log = tmp_path / "pipeline.log"
    url = f"http://127.0.0.1:{port}/api/v1/readings"
    clients = Clients(url)
    rng = random.Random(int.from_bytes(os.urandom(4)))
    pause = rng.uniform(0.3, 1.5)

    first = start(spec, log)
    wait_until_serving(url, first, log)
    clients.start()
    time.sleep(pause)
    acknowledged_before_kill = len(clients.acknowledged)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.2)
    failed_at_kill = clients.failed
    clients.stop()

    second = start(spec, log)
    wait_until_serving(url, second, log)
    clients.start()
    time.sleep(1.0)
    clients.stop()
    wait_until_caught_up(tmp_path / "checkpoints")
    second.send_signal(signal.SIGINT)
    assert second.wait(60) == 130, log.read_text()
    with IngestLog(tmp_path / "checkpoints.ingest-log") as ingested:
        assert checkpointed_position(tmp_path / "checkpoints") == ingested.next_sequence

    with Store(db) as store:
        stored = store.sql("SELECT CAST(temperature AS BIGINT) AS n FROM readings")["n"]
        late = store.sql("SELECT count(*) AS n FROM late_readings")["n"][0]
    where = f"(killed after {pause:.2f} s; log:\n{log.read_text()})"
    assert acknowledged_before_kill > 0, f"nothing was acknowledged before the kill {where}"
    assert failed_at_kill > 0 or clients.failed > 0, f"no request was cut off {where}"
    assert stored.n_unique() == stored.len(), f"a reading was stored twice {where}"
    missing = clients.acknowledged - set(stored.to_list())
    assert not missing, f"{len(missing)} acknowledged readings are not stored {where}"
    assert late == 0
