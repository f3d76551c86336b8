"""MQTT ingest: messages/s a pipeline drains from a Mosquitto backlog, against bare paho.

``--messages`` QoS 1 readings wait at the broker for a persistent session (published while
no one listened); then the clock runs while each consumer drains them:

- the pipeline with the MQTT source, durable (the default: appended to the log and fsynced
  before each acknowledgement), and again with ``durable: false`` (acknowledged on
  receipt, from memory); no steps, an in-memory sink;
- bare paho: a client of the same kind of session acknowledging each message in its
  callback, doing nothing else: what this machine's Python and broker allow at best.

Prints each one's messages/s and the pipeline's ratio to bare paho. The broker is the one
scripts/mosquitto.sh starts (``bash scripts/mosquitto.sh start``; its URL: ``--url``).

    python benchmarks/mqtt_backlog.py [--messages 100000] [--url mqtt://127.0.0.1:18830]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensorstream.pipeline.spec import parse_spec
from sensorstream.runtime.runner import Runner
from sensorstream.testing import ListSink


def connected(
    url: str, client_id: str, *, manual_ack: bool = False, on_message: Any = None
) -> paho.Client:
    """A paho client with a persistent session (a day), connected and looping."""
    parts = urlsplit(url)
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 86400
    properties.ReceiveMaximum = 1000
    client.connect(
        parts.hostname or "", parts.port or 1883, clean_start=False, properties=properties
    )
    client.loop_start()
    return client


def backlog(url: str, prefix: str, count: int) -> None:
    """Publish ``count`` readings at QoS 1 and wait until the broker has them all."""
    publisher = connected(url, f"bench-publisher-{uuid.uuid4().hex[:8]}")
    base = int(time.time() * 1000)
    infos = [
        publisher.publish(
            f"{prefix}/d{n % 1000}/telemetry",
            json.dumps({"ts": base + n, "temperature": n % 40, "humidity": 50.0}),
            qos=1,
        )
        for n in range(count)
    ]
    for info in infos:
        info.wait_for_publish(120)
    publisher.disconnect()
    publisher.loop_stop()


def subscribed_session(url: str, client_id: str, topic: str) -> None:
    """Create a persistent session subscribed to ``topic``, then leave it for the backlog."""
    client = connected(url, client_id)
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()
    client.subscribe(topic, qos=1)
    done.wait(10)
    client.disconnect()
    client.loop_stop()


def bare_paho(url: str, count: int) -> float:
    prefix, client_id = f"bench-{uuid.uuid4().hex[:8]}", f"bench-bare-{uuid.uuid4().hex[:8]}"
    subscribed_session(url, client_id, f"{prefix}/+/telemetry")
    backlog(url, prefix, count)
    received = 0
    started = 0.0
    done = threading.Event()

    def on_message(client: paho.Client, _: object, message: paho.MQTTMessage) -> None:
        nonlocal received, started
        client.ack(message.mid, message.qos)
        received += 1
        if received == 1:
            started = time.perf_counter()
        if received == count:
            done.set()

    client = connected(url, client_id, manual_ack=True, on_message=on_message)
    done.wait(600)
    seconds = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return (count - 1) / seconds


def pipeline(url: str, count: int, *, durable: bool) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        spec = parse_spec(
            f"""
name: mqtt_bench
source:
  type: mqtt
  url: {url}
  topics: ["{prefix}/+/telemetry"]
  device_id_from_topic: "{prefix}/{{device_id}}/telemetry"
  durable: {str(durable).lower()}
readings: {{measurements: {{temperature: float, humidity: float}}}}
checkpoint: {{dir: "{Path(folder) / "checkpoints"}", interval: 1s}}
api: {{serve: false}}
"""
        )
        first = Runner(spec, sinks=[ListSink()])
        thread = threading.Thread(target=first.run)
        thread.start()  # only to make the session and its subscription
        time.sleep(1.5)
        first.stop()
        thread.join()
        backlog(url, prefix, count)
        sink = ListSink()
        runner = Runner(spec, sinks=[sink])
        thread = threading.Thread(target=runner.run)
        thread.start()
        while not (first_batch := sink.count("readings")):
            time.sleep(0.001)
        started = time.perf_counter()  # from the first batch on: start-up is not draining
        while sink.count("readings") < count:
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        runner.stop()
        thread.join()
    return (count - first_batch) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--url", default="mqtt://127.0.0.1:18830")
    args = parser.parse_args()
    print(f"draining {args.messages:,} queued QoS 1 messages from {args.url}", flush=True)
    bare = bare_paho(args.url, args.messages)
    print(f"  bare paho (ack in the callback):  {bare:>10,.0f} messages/s", flush=True)
    for durable in (True, False):
        rate = pipeline(args.url, args.messages, durable=durable)
        label = "pipeline, durable (log + fsync)" if durable else "pipeline, durable: false"
        print(
            f"  {label + ':':<33} {rate:>10,.0f} messages/s   ratio {rate / bare:.2f}", flush=True
        )


if __name__ == "__main__":
    main()
