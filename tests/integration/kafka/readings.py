"""What the Kafka tests share: readings produced to a topic, a pipeline reading them."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import Producer

from sensorstream.pipeline.spec import PipelineSpec, parse_spec

T0 = 1_717_243_200  # 2024-06-01T12:00:00Z


def readings(count: int, devices: int = 12, seed: int = 7) -> list[dict[str, object]]:
    """Out-of-order readings of a small fleet, a few seconds apart."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        device = f"dev-{n % devices:02d}"
        second = n // devices * 2 + rng.uniform(-3, 3)
        rows.append({"device_id": device, "ts": T0 + second, "temperature": rng.uniform(-5, 35)})
    return rows


def produce(bootstrap: str, topic: str, rows: Sequence[dict[str, object] | bytes]) -> None:
    """Produce each row as JSON (bytes as they are), keyed by device id; wait for the acks."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures: list[str] = []

    def report(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for row in rows:
        value = row if isinstance(row, bytes) else json.dumps(row).encode()
        key = row.get("device_id") if isinstance(row, dict) else None
        while True:
            try:
                producer.produce(
                    topic, value, key=str(key).encode() if key else None, on_delivery=report
                )
                break
            except BufferError:  # the local queue is full: wait for deliveries
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages left unacknowledged"
    assert not failures, failures


PIPELINE = """
name: kafka_fleet
source: {{type: kafka, bootstrap: "{bootstrap}", topic: {topic}, group: {group},
          until_end: {until_end}}}
readings:
  measurements: {{temperature: float}}
event_time: {{out_of_orderness: 5s, allowed_lateness: 30s, idle_timeout: null}}
steps:
  - name: per_minute
    window: {{type: tumbling, size: 1m}}
    key: [device_id]
    aggregates: [count, mean(temperature), max(temperature)]
sinks: [{{type: duckdb, path: {db}}}]
checkpoint: {{dir: {checkpoints}, interval: {interval}}}
"""


def kafka_pipeline(
    folder: Path,
    bootstrap: str,
    topic: str,
    *,
    group: str = "fleet",
    until_end: bool = True,
    interval: str = "1s",
) -> Path:
    """A pipeline YAML reading ``topic`` into a DuckDB store in ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    text = PIPELINE.format(
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        until_end=str(until_end).lower(),
        db=folder / "fleet.duckdb",
        checkpoints=folder / "checkpoints",
        interval=interval,
    )
    path.write_text(text)
    return path


def file_twin(kafka_spec: Path, rows: Sequence[dict[str, object]], folder: Path) -> PipelineSpec:
    """The same pipeline over the same readings from a file: the reference run."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "readings.ndjson"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    text = kafka_spec.read_text()
    start = text.index("source:")
    end = text.index("readings:")
    text = text[:start] + f"source: {{type: file, path: {data}}}\n" + text[end:]
    text = text.replace(str(kafka_spec.parent), str(folder))
    return parse_spec(text)
