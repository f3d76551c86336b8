"""Readings from Kafka into the engine, beside the broker's own ceiling; latency at a fixed rate.

Throughput: W1's readings (1M by default) are produced once to a two-partition topic of the
broker ``scripts/kafka.sh`` runs; then, interleaved A B A B on the same machine,

- **ceiling**: a bare confluent-kafka consumer of a fresh group that only counts messages
  (``consume`` in batches, nothing decoded): what reading the topic costs at all;
- **pipeline**: ``sensorstream run --until-end`` as a user runs it (a whole process: start-up,
  consumer-group join, decoding, the W1 window step, raw readings stored as Parquet
  segments and results in DuckDB, checkpoints, offsets committed), a fresh group each run.

The ratio pipeline / ceiling is the figure; the fastest run of each counts.

Latency: a pipeline runs live (in this process) while a simulated fleet publishes at a
fixed rate for ``--seconds``; each batch's latency is from its oldest message's
producer timestamp to its results reaching the sinks, and the p50/p99 are over batches
(so a batch's latency is its worst reading's).

    python benchmarks/kafka_ingest.py [--readings 1000000] [--repeat 2] [--rate 20000]
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
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).parent))

from w1_tumbling import dataset, w1_pipeline  # type: ignore[import-not-found]

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 2


def broker() -> str:
    """Start (if need be) the broker of scripts/kafka.sh; its bootstrap address."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "kafka.sh"), "start"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SENSORSTREAM_PYTHON": sys.executable},
    )
    if done.returncode != 0:
        sys.exit(f"kafka.sh start failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


def new_topic(bootstrap: str, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"{name}-{uuid.uuid4().hex[:8]}"
    futures = admin.create_topics([NewTopic(topic, PARTITIONS, 1, config={"retention.ms": "-1"})])
    futures[topic].result(30)
    return topic


def produce_file(bootstrap: str, topic: str, path: Path, limit: int) -> int:
    """Produce the file's first ``limit`` lines, keyed by device id (cut from the line)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    sent = 0
    with path.open("rb") as lines:
        for line in lines:
            if sent >= limit:
                break
            key = line[15 : line.index(b'"', 15)]  # {"device_id": "dev-00001", ...
            while True:
                try:
                    producer.produce(topic, line.rstrip(b"\n"), key=key)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
    if producer.flush(120):
        sys.exit("the broker did not take every message")
    return sent


def ceiling(bootstrap: str, topic: str, total: int) -> float:
    """Messages a second a bare consumer reads (nothing decoded), start-up included."""
    started = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bare-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    while seen < total:
        seen += sum(1 for m in consumer.consume(20_000, 1.0) if m.error() is None)
    consumer.close()
    return total / (time.perf_counter() - started)


def pipeline_run(bootstrap: str, topic: str, total: int) -> float:
    """Readings a second of ``sensorstream run --until-end``, a whole process."""
    with tempfile.TemporaryDirectory() as scratch:
        spec: dict[str, Any] = w1_pipeline(Path("unused"), Path(scratch), store_readings=True)
        spec["source"] = {
            "type": "kafka",
            "bootstrap": bootstrap,
            "topic": topic,
            "group": f"run-{uuid.uuid4().hex[:8]}",
        }
        path = Path(scratch) / "kafka.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        command = [
            sys.executable, "-m", "sensorstream", "run", str(path), "--until-end", "--no-progress"
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return total / (time.perf_counter() - started)


def latency(bootstrap: str, rate: float, seconds: float) -> dict[str, float]:
    """p50/p99 of batch latency at a fixed publish rate, the pipeline live in this process."""
    from sensorstream.pipeline.spec import PipelineSpec
    from sensorstream.runtime.runner import Runner
    from sensorstream.sources.simulator_publish import KafkaPublisher, publish_fleet

    topic = new_topic(bootstrap, "latency")
    observed: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        spec: dict[str, Any] = w1_pipeline(Path("unused"), Path(scratch), store_readings=True)
        spec["source"] = {"type": "kafka", "bootstrap": bootstrap, "topic": topic}
        spec["checkpoint"]["interval"] = "5s"
        runner = Runner(PipelineSpec.model_validate(spec))
        original = runner.metrics.observe_batch

        def observe(stream: str, rows: int, latency_s: float) -> None:
            observed.append(latency_s)
            original(stream, rows, latency_s)

        runner.metrics.observe_batch = observe  # type: ignore[method-assign]
        thread = threading.Thread(target=runner.run)
        thread.start()
        time.sleep(3)  # the group joined
        done = publish_fleet(KafkaPublisher(f"kafka://{bootstrap}/{topic}"), devices=1000,
                             rate=rate, seconds=seconds)  # fmt: skip
        time.sleep(2)
        runner.stop()
        thread.join()
    ordered = sorted(observed)
    return {
        "published_per_s": done.rate,
        "batches": len(ordered),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    bootstrap = broker()
    topic = new_topic(bootstrap, "w1")
    sent = produce_file(bootstrap, topic, dataset(5_000_000, args.devices), args.readings)
    print(f"W1: {sent:,} readings in a {PARTITIONS}-partition topic at {bootstrap}")
    runs: dict[str, list[float]] = {"ceiling": [], "pipeline": []}
    for number in range(max(1, args.repeat)):
        for kind in runs:
            rate = (
                ceiling(bootstrap, topic, sent)
                if kind == "ceiling"
                else pipeline_run(bootstrap, topic, sent)
            )
            runs[kind].append(rate)
            print(f"  run {number + 1}, {kind + ':':<10}{rate:>12,.0f}/s")
    best = {kind: max(rates) for kind, rates in runs.items()}
    print(f"bare consumer (ceiling)   {best['ceiling']:>12,.0f} messages/s")
    print(f"sensorstream run          {best['pipeline']:>12,.0f} readings/s")
    print(f"ratio pipeline / ceiling: {best['pipeline'] / best['ceiling']:.2f}")
    figures = latency(bootstrap, args.rate, args.seconds)
    print(
        f"latency at {figures['published_per_s']:,.0f} readings/s published "
        f"({figures['batches']:,} batches): p50 {figures['p50_ms']:.0f} ms, "
        f"p99 {figures['p99_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
