"""kill -9 while readings arrive over MQTT (QoS 1, durable): nothing the broker took is lost.

A real pipeline (``sensorstream run``, MQTT source, DuckDB sink) runs in a subprocess while a
publisher sends numbered readings at QoS 1 to a real Mosquitto. The pipeline is killed -9 at
a random moment and started again; the publisher goes on throughout. The source acknowledges
a message to the broker only once its log has it on disk, so each one is either in the log
or still held for the persistent session (and sent again to the restarted pipeline). Then
every reading the broker acknowledged to the publisher is stored exactly once: one that was
both in the log and sent again is dropped as a duplicate.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sensorstream.sources.ingest_log import IngestLog
from sensorstream.store import Store
from sensorstream.testing.checkpoints import checkpointed_position, current_unit
from tests.brokers import MqttBroker
from tests.integration.mqtt.helpers import TIMEOUT_S, client, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
CHUNK = 50

PIPELINE = """
name: received
source:
  type: mqtt
  url: {url}
  topics: ["{prefix}/+/telemetry"]
  device_id_from_topic: "{prefix}/{{device_id}}/telemetry"
  reconnect_backoff: 1s
  max_reconnect_backoff: 2s
readings: {{measurements: {{temperature: float}}}}
sinks:
  - {{type: duckdb, path: "{db}"}}
checkpoint: {{dir: "{checkpoints}", interval: 200ms}}
api: {{serve: false}}
"""


class Publisher:
    """A thread publishing numbered readings at QoS 1 until stopped; the numbers acknowledged."""

    def __init__(self, broker: MqttBroker, prefix: str) -> None:
        self.broker, self.prefix = broker, prefix
        self.numbers = itertools.count()
        self.base_ms = int(time.time() * 1000)
        self.acknowledged: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)

    def _publish(self) -> None:
        publisher = client(self.broker)
        try:
            while not self._stop.is_set():
                numbers = [next(self.numbers) for _ in range(CHUNK)]
                infos = [
                    publisher.publish(
                        f"{self.prefix}/d{n % 7}/telemetry",
                        json.dumps({"ts": self.base_ms + n, "temperature": n}),
                        qos=1,
                    )
                    for n in numbers
                ]
                for info in infos:
                    info.wait_for_publish(TIMEOUT_S)  # the broker has it: PUBACK
                self.acknowledged.update(numbers)
                time.sleep(0.01)
        finally:
            publisher.disconnect()
            publisher.loop_stop()
            publisher._reset_sockets()


def start(spec: Path, log: Path) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-m", "sensorstream", "run", str(spec), "--no-progress"]
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=spec.parent, env=env, stdout=output, stderr=output)


def wait_until_caught_up(folder: Path, at_least: int) -> None:
    """Wait until the checkpoint holds ``at_least`` messages and has held still for a second."""
    deadline = time.monotonic() + 60
    last, since = checkpointed_position(folder), time.monotonic()
    while time.monotonic() - since < 1.0 or (last or 0) < at_least:
        assert time.monotonic() < deadline, "the pipeline never caught up with the publisher"
        time.sleep(0.05)
        now = checkpointed_position(folder)
        if now != last:
            last, since = now, time.monotonic()


def test_every_reading_the_broker_took_is_stored_exactly_once_across_kill_9(
    mosquitto: MqttBroker, tmp_path: Path
) -> None:
    prefix = unique("crash")
    spec, db, checkpoints = tmp_path / "pipeline.yaml", tmp_path / "out.duckdb", tmp_path / "ckpt"
    spec.write_text(
        PIPELINE.format(url=mosquitto.url, prefix=prefix, db=db, checkpoints=checkpoints)
    )
    log = tmp_path / "pipeline.log"
    publisher = Publisher(mosquitto, prefix)
    pause = random.Random(int.from_bytes(os.urandom(4))).uniform(0.5, 2.0)

    first = start(spec, log)
    try:
        wait_until(current_unit(checkpoints).exists, "the first checkpoint", 120)
        publisher.start()
        time.sleep(pause)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    with IngestLog(tmp_path / "ckpt.ingest-log") as kept:
        in_the_log = kept.next_sequence  # acknowledged to the broker: on disk before that
    killed_at = len(publisher.acknowledged)
    time.sleep(0.5)  # the broker queues for the persistent session meanwhile

    second = start(spec, log)
    try:
        time.sleep(1.0)
        publisher.stop()
        wait_until_caught_up(checkpoints, at_least=len(publisher.acknowledged))
        second.send_signal(signal.SIGINT)
        assert second.wait(60) == 130, log.read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()

    with Store(db) as store:
        stored = store.sql("SELECT CAST(temperature AS BIGINT) AS n FROM readings")["n"]
        totals = store.counters("received")
    where = (
        f"(killed after {pause:.2f} s, {in_the_log} messages in the log; log:\n{log.read_text()})"
    )
    assert killed_at > 0, f"nothing was published before the kill {where}"
    assert in_the_log > 0, f"nothing reached the log before the kill {where}"
    assert stored.n_unique() == stored.len(), f"a reading was stored twice {where}"
    missing = publisher.acknowledged - set(stored.to_list())
    assert not missing, f"{len(missing)} readings the broker took are not stored {where}"
    # Every message counted once: a repeat the broker sent again is a duplicate, not lost.
    assert totals["lines"] == totals["accepted"] + totals.get("duplicates", 0), totals
    assert totals["accepted"] == len(publisher.acknowledged), totals
