"""The Kafka sink's sample for the sink contract: what a reader of its topics ends up with.

Kafka cannot take a message back, so what the sink "stored" is what a reader of a compacted
results topic keeps: the latest result per step, key and window (a deleted one gone), and
each alert transition once by its id. That is the sink's promise: a replay after a crash
publishes the same results and transitions again, and a reader keeps them once.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

import orjson
import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from sensorstream.sinks import KafkaSinkSettings
from tests.brokers import KAFKA_SCRIPT, run_script, script_complaint


@cache
def bootstrap() -> str:
    """The broker of scripts/kafka.sh, started if need be (left running for later tests)."""
    started = run_script(KAFKA_SCRIPT, "start")
    if started.returncode != 0:
        why = f"Kafka not available: {script_complaint(started)}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return started.stdout.strip().splitlines()[-1]


def _prefix(folder: Path) -> str:
    return "contract-" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]


def kafka_settings(folder: Path) -> KafkaSinkSettings:
    """Topics of this folder's own, on the test broker."""
    prefix = _prefix(folder)
    return KafkaSinkSettings(
        bootstrap=bootstrap(),
        results_topic=prefix + "-{step}",
        alerts_topic=prefix + "-alerts",
    )


def _messages(topic: str) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """Every message of a topic, partition by partition, in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(),
            "group.id": "contract-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        found = []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            seen = low
            while seen < high:
                message = consumer.poll(10)
                assert message is not None, f"{topic}[{partition}] ended early at {seen}"
                assert message.error() is None, message.error()
                headers = {
                    str(k): v.encode() if isinstance(v, str) else bytes(v or b"")
                    for k, v in list(message.headers() or [])
                }
                key, value = message.key(), message.value()
                found.append((bytes(key or b""), bytes(value or b""), headers))
                seen = (message.offset() or 0) + 1
        return found
    finally:
        consumer.close()


def stored_in_kafka(folder: Path) -> dict[str, pl.DataFrame]:
    """The folder's topics as a reader keeps them: latest result per window, transitions once."""
    prefix = _prefix(folder)
    topics = sorted(
        t
        for t in AdminClient({"bootstrap.servers": bootstrap()}).list_topics(timeout=10).topics
        if t.startswith(prefix + "-")
    )
    stored: dict[str, pl.DataFrame] = {}
    for topic in topics:
        latest: dict[bytes, bytes] = {}
        for key, value, headers in _messages(topic):
            if topic.endswith("-alerts"):
                latest[headers["idempotency-key"]] = value
                continue
            row = orjson.loads(value)
            window = key + b"|" + str(row["window_start"]).encode()
            if row["op"] == "delete":
                latest.pop(window, None)
            else:
                latest[window] = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        frame = pl.DataFrame(
            {"id": list(latest), "value": list(latest.values())},
            schema={"id": pl.Binary(), "value": pl.Binary()},
        )
        stored[topic.removeprefix(prefix + "-")] = frame.sort("id")
    return stored
