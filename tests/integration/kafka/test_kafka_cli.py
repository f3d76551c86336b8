"""The command line against a real broker: a fleet published, a topic run to its end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.brokers import KafkaBroker

pytestmark = pytest.mark.integration

PIPELINE = """
name: published
source: {{type: kafka, bootstrap: "{bootstrap}", topic: {topic}, group: cli}}
readings: {{measurements: {{temperature: float, humidity: float}}}}
event_time: {{out_of_orderness: 2s, idle_timeout: null}}
steps:
  - name: per_10s
    window: {{type: tumbling, size: 10s}}
    aggregates: [count, mean(temperature)]
  - name: any_reading
    rule: {{threshold: temperature, above: {{warning: -1000}}}}
sinks:
  - {{type: duckdb, path: "{db}"}}
  - {{type: kafka, bootstrap: "{bootstrap}", results_topic: "{topic}-{{step}}",
      alerts_topic: "{topic}-alerts"}}
checkpoint: {{dir: "{checkpoints}"}}
api: {{serve: false}}
"""


def sensorstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorstream", *args], capture_output=True, text=True, timeout=300
    )


def everything(bootstrap: str, topic: str) -> list[dict[str, object]]:
    """Every message of a one-partition topic, decoded."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader"})
    try:
        partition = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(partition, timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        found: list[dict[str, object]] = []
        while len(found) < high - low:
            message = consumer.poll(10)
            assert message is not None
            assert message.error() is None
            found.append(json.loads(message.value() or b"null"))
        return found
    finally:
        consumer.close()


def test_a_published_fleet_runs_to_the_end_of_its_topic_with_results_and_alerts_out(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic("cli", partitions=2)
    to = f"kafka://{kafka.bootstrap}/{topic}"
    published = sensorstream(
        "simulate", "--to", to, "--devices", "20", "--rate", "2000", "--readings", "4000"
    )
    assert published.returncode == 0, published.stderr
    assert "published 4,000 readings" in published.stdout
    assert "readings/s (target 2,000/s" in published.stdout
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        PIPELINE.format(
            bootstrap=kafka.bootstrap,
            topic=topic,
            db=tmp_path / "out.duckdb",
            checkpoints=tmp_path / "checkpoints",
        )
    )
    ran = sensorstream("run", str(spec), "--until-end", "--no-progress")
    assert ran.returncode == 0, ran.stderr
    results = everything(kafka.bootstrap, f"{topic}-per_10s")
    assert {r["step"] for r in results} == {"per_10s"}
    latest = {(r["device_id"], r["window_start"]): r for r in results}  # as a compacted topic
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        [(lines,)] = con.sql("SELECT sum(value) FROM counters WHERE counter = 'lines'").fetchall()
        [(stored, windows)] = con.sql(
            "SELECT sum(count), count(*) FROM results_published_per_10s"
        ).fetchall()
    assert lines == 4000
    assert len(latest) == windows
    assert sum(int(str(r["count"])) for r in latest.values()) == stored
    alerts = everything(kafka.bootstrap, f"{topic}-alerts")
    firing = {a["key"] for a in alerts if a["state"] == "firing"}
    assert len(firing) == 20  # every device fired once, and its transition was published
    again = sensorstream("run", str(spec), "--until-end", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "already" in (again.stdout + again.stderr)


def test_until_end_without_a_kafka_stream_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        "name: n\nsource: {type: simulator}\nreadings: {measurements: {t: float}}\nsteps: []\n"
    )
    ran = sensorstream("run", str(spec), "--until-end")
    assert ran.returncode == 2
    assert "--until-end is for Kafka sources" in ran.stderr
