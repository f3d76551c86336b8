"""Readings from a real Kafka broker through a whole pipeline (scripts/kafka.sh starts it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import load_spec
from sensorstream.runtime.runner import Runner
from sensorstream.sources.kafka import KafkaSource, KafkaSourceSettings
from tests.brokers import KafkaBroker
from tests.integration.kafka.readings import file_twin, kafka_pipeline, produce, readings

pytestmark = pytest.mark.integration


def results(db: Path) -> pl.DataFrame:
    """The stored 1-minute results, in key order."""
    with duckdb.connect(str(db), read_only=True) as con:
        frame: pl.DataFrame = con.sql(
            "SELECT device_id, window_start, count, temperature_mean, temperature_max "
            "FROM results_kafka_fleet_per_minute ORDER BY device_id, window_start"
        ).pl()
    return frame


def dead_letters(db: Path) -> list[tuple[str, str]]:
    """The stored dead letters' reason codes and origins."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("SELECT reason_code, origin FROM dead_letters ORDER BY origin").fetchall()
    return [(str(code), str(origin)) for code, origin in rows]


def test_readings_from_three_partitions_give_the_results_of_the_same_file(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic("fleet", partitions=3)
    rows = readings(3_000)
    produce(kafka.bootstrap, topic, rows)
    spec_path = kafka_pipeline(tmp_path / "kafka", kafka.bootstrap, topic)
    summary = Runner(load_spec(spec_path)).run()
    assert summary.counters.get("lines") == len(rows)
    assert summary.counters.get("accepted") == len(rows)
    assert sorted(summary.partitions) == [0, 1, 2]
    Runner(file_twin(spec_path, rows, tmp_path / "file")).run()
    got, want = (
        results(tmp_path / "kafka" / "fleet.duckdb"),
        results(tmp_path / "file" / "fleet.duckdb"),
    )
    assert got.height == want.height > 0
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12)


def test_malformed_messages_are_dead_lettered_with_topic_partition_and_offset(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic("poison", partitions=1)
    good = readings(5)
    produce(kafka.bootstrap, topic, [good[0], b"{not json", good[1], b'{"device_id": "x"}', b""])
    spec_path = kafka_pipeline(tmp_path, kafka.bootstrap, topic)
    summary = Runner(load_spec(spec_path)).run()
    counts = summary.counters
    assert counts.get("lines") == 5
    assert (counts.get("accepted"), counts.get("dead_letters"), counts.get("blank")) == (2, 2, 1)
    stored = dead_letters(tmp_path / "fleet.duckdb")
    assert [origin for _, origin in stored] == [
        f"topic {topic} partition 0 offset 1",
        f"topic {topic} partition 0 offset 3",
    ]
    assert {code for code, _ in stored} == {"invalid_json", "missing_timestamp"}


def test_a_rerun_after_the_end_resumes_from_the_checkpoint_and_commits_offsets(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topic = kafka.create_topic("commit", partitions=2)
    rows = readings(400)
    produce(kafka.bootstrap, topic, rows)
    spec_path = kafka_pipeline(tmp_path, kafka.bootstrap, topic, group="commits")
    first = Runner(load_spec(spec_path)).run()
    assert first.counters.get("lines") == len(rows)
    probe = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "commits"})
    try:
        committed = probe.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        ends = [
            probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)
        ]
    finally:
        probe.close()
    assert [tp.offset for tp in committed] == ends  # committed once the checkpoint was saved
    again = Runner(load_spec(spec_path)).run()
    assert again.already_complete
    assert again.lines_this_run == 0


def test_a_start_moment_skips_what_was_produced_before_it(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic("moment", partitions=2)
    rows = readings(200)
    produce(kafka.bootstrap, topic, rows[:120])
    time.sleep(0.05)  # message timestamps are milliseconds
    moment = datetime.now(UTC)
    time.sleep(0.05)
    produce(kafka.bootstrap, topic, rows[120:])
    spec = load_spec(kafka_pipeline(tmp_path, kafka.bootstrap, topic))
    source = spec.stream_specs()["readings"].source
    assert isinstance(source, KafkaSourceSettings)
    moved = source.model_copy(update={"start": moment})
    summary = Runner(spec, source=moved.build()).run()
    assert summary.counters.get("lines") == 80  # the later ones, in both partitions


def test_a_start_moment_needs_a_time_zone() -> None:
    with pytest.raises(ConfigError, match="time zone"):
        KafkaSource("t", start=datetime(2026, 12, 3))  # noqa: DTZ001 - the case tested
