"""Readings from Mosquitto into the engine, beside the broker's own ceiling; latency at a rate.

Throughput: ``sensorstream simulate --to mqtt://...`` publishes ``--readings`` readings
(1,000 devices, QoS 1, each on ``bench-<id>/<device>/telemetry``) as fast as it can, in a
process of its own, to the Mosquitto ``scripts/mosquitto.sh`` runs. On the other side,
interleaved A B A B,

- **ceiling**: a bare paho-mqtt subscriber (QoS 1, a persistent session) that only counts
  messages: what the publisher, the broker and a Python client manage together;
- **pipeline**: a pipeline with the MQTT source (QoS 1, the durable log: each message
  fsynced before it is acknowledged), the W1 window step and the DuckDB sink storing raw
  readings, in this process, until it counted every reading.

Each is timed from the publisher's start to the last reading counted; the fastest run of
each counts, and the ratio pipeline / ceiling is the figure.

Latency: the pipeline runs live while a fleet publishes at ``--rate`` for ``--seconds``;
each batch's latency is from its oldest message's arrival (appended to the log) to its
results reaching the sinks; p50/p99 over batches.

    python benchmarks/mqtt_ingest.py [--readings 200000] [--repeat 2] [--rate 2000] [--latency-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).parent))

from w1_tumbling import w1_pipeline  # type: ignore[import-not-found]

REPO = Path(__file__).resolve().parent.parent
DEVICES = 1000


def broker() -> tuple[str, int]:
    """Start (if need be) the Mosquitto of scripts/mosquitto.sh; its host and port."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "mosquitto.sh"), "start"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SENSORSTREAM_PYTHON": sys.executable},
    )
    if done.returncode != 0:
        sys.exit(f"mosquitto.sh start failed: {done.stderr.strip().splitlines()[-1:]}")
    url = done.stdout.strip().splitlines()[-1]
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    return host, int(port)


def publish(
    host: str, port: int, prefix: str, readings: int, rate: float
) -> subprocess.Popen[bytes]:
    """``sensorstream simulate --to`` in a process of its own."""
    to = f"mqtt://{host}:{port}/{prefix}/{{device_id}}/telemetry"
    command = [
        sys.executable, "-m", "sensorstream", "simulate", "--to", to, "--devices", str(DEVICES),
        "--rate", str(rate), "--readings", str(readings),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def ceiling(host: str, port: int, readings: int) -> float:
    """Readings a second that a bare QoS 1 subscriber counts, the publisher included."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    seen = 0
    done = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: object, _message: mqtt.MQTTMessage) -> None:
        nonlocal seen
        seen += 1
        if seen >= readings:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=prefix, clean_session=False)
    client.on_message = on_message
    client.connect(host, port)
    client.subscribe(f"{prefix}/+/telemetry", qos=1)
    client.loop_start()
    time.sleep(0.5)
    started = time.perf_counter()
    publisher = publish(host, port, prefix, readings, 1e9)
    done.wait(600)
    seconds = time.perf_counter() - started
    publisher.wait()
    client.disconnect()
    client.loop_stop()
    return readings / seconds


def _pipeline(host: str, port: int, prefix: str, scratch: Path) -> Any:
    from sensorstream.pipeline.spec import PipelineSpec
    from sensorstream.runtime.runner import Runner

    spec: dict[str, Any] = w1_pipeline(Path("unused"), scratch, store_readings=True)
    spec["source"] = {
        "type": "mqtt",
        "url": f"mqtt://{host}:{port}",
        "topics": [f"{prefix}/+/telemetry"],
        "qos": 1,
        "client_id": prefix,
    }
    spec["checkpoint"]["interval"] = "5s"
    return Runner(PipelineSpec.model_validate(spec))


def _running(runner: Any) -> Callable[[], int]:
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()

    def lines() -> int:
        return sum(c.get("lines") for c in list(runner.counters.values()))

    return lines


def pipeline_run(host: str, port: int, readings: int) -> float:
    """Readings a second into the pipeline (durable log, window, DuckDB), the publisher included."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        runner = _pipeline(host, port, prefix, Path(scratch))
        lines = _running(runner)
        time.sleep(2)  # connected and subscribed
        started = time.perf_counter()
        publisher = publish(host, port, prefix, readings, 1e9)
        while lines() < readings:
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        publisher.wait()
        runner.stop()
        time.sleep(1)
    return readings / seconds


def latency(host: str, port: int, rate: float, seconds: float) -> dict[str, float]:
    """p50/p99 batch latency with the fleet publishing at ``rate``."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    observed: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        runner = _pipeline(host, port, prefix, Path(scratch))
        original = runner.metrics.observe_batch

        def observe(stream: str, rows: int, latency_s: float) -> None:
            observed.append(latency_s)
            original(stream, rows, latency_s)

        runner.metrics.observe_batch = observe
        lines = _running(runner)
        time.sleep(2)
        count = int(rate * seconds)
        publish(host, port, prefix, count, rate).wait()
        deadline = time.monotonic() + 30
        while lines() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.stop()
        time.sleep(1)
    ordered = sorted(observed)
    return {
        "batches": len(ordered),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rate", type=float, default=2_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput runs")
    args = parser.parse_args()
    host, port = broker()
    if not args.latency_only:
        throughput(host, port, args.readings, args.repeat)
    figures = latency(host, port, args.rate, args.seconds)
    print(
        f"latency at {args.rate:,.0f} readings/s ({figures['batches']:,} batches): "
        f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms"
    )


def throughput(host: str, port: int, readings: int, repeat: int) -> None:
    """The pipeline beside the bare subscriber, A B A B: the fastest of each and their ratio."""
    print(f"{readings:,} readings from {DEVICES:,} devices, QoS 1, via {host}:{port}")
    runs: dict[str, list[float]] = {"ceiling": [], "pipeline": []}
    for number in range(max(1, repeat)):
        for kind in runs:
            measure = ceiling if kind == "ceiling" else pipeline_run
            rate = measure(host, port, readings)
            runs[kind].append(rate)
            print(f"  run {number + 1}, {kind + ':':<10}{rate:>12,.0f}/s")
    best = {kind: max(rates) for kind, rates in runs.items()}
    print(f"bare subscriber (ceiling) {best['ceiling']:>12,.0f} messages/s")
    print(f"pipeline                  {best['pipeline']:>12,.0f} readings/s")
    print(f"ratio pipeline / ceiling: {best['pipeline'] / best['ceiling']:.2f}")


if __name__ == "__main__":
    main()
