"""A pipeline reading a real Kafka broker survives kill -9 and a broker restart unchanged.

The stored results of a pipeline killed with -9 (three times) and restarted equal those of
an uninterrupted run over the same topic; a broker restarted mid-stream loses no reading
and stores none twice. Float sums are compared to 1e-12: Kafka's batches follow the
fetches, so a window's sum may add its readings in another grouping (counts, minima,
maxima and keys are exact).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sensorstream.pipeline.spec import load_spec
from sensorstream.runtime.runner import Runner
from sensorstream.store import scan_readings
from tests.brokers import KafkaBroker
from tests.integration.kafka.readings import file_twin, kafka_pipeline, produce, readings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
KILLS = 3


def results(db: Path) -> pl.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        frame: pl.DataFrame = con.sql(
            "SELECT device_id, window_start, revision, count, temperature_mean, temperature_max "
            "FROM results_kafka_fleet_per_minute ORDER BY device_id, window_start"
        ).pl()
    return frame


def counters(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("SELECT counter, sum(value) FROM counters GROUP BY counter").fetchall()
    return {str(name): int(value) for name, value in rows}


def _command(spec: Path) -> list[str]:
    return [sys.executable, "-m", "sensorstream", "run", str(spec), "--no-progress"]


def _checkpointed(folder: Path) -> bool:
    return any(folder.glob("checkpoints/partitions/*/CURRENT"))


def test_kill_9_mid_topic_then_restart_gives_the_results_of_an_uninterrupted_run(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic("crash", partitions=3)
    rows = readings(60_000, devices=60)
    produce(kafka.bootstrap, topic, rows)
    reference = kafka_pipeline(tmp_path / "reference", kafka.bootstrap, topic, group="ref")
    subprocess.run(_command(reference), check=True, capture_output=True)

    crashed = kafka_pipeline(
        tmp_path / "crashed", kafka.bootstrap, topic, group="crashed", interval="200ms"
    )
    kills = 0
    for _ in range(KILLS):
        process = subprocess.Popen(_command(crashed), stderr=subprocess.DEVNULL)
        seen = sorted(p.stat().st_mtime_ns for p in crashed.parent.glob("checkpoints/*/*/CURRENT"))
        while process.poll() is None and (
            not _checkpointed(crashed.parent)
            or sorted(p.stat().st_mtime_ns for p in crashed.parent.glob("checkpoints/*/*/CURRENT"))
            == seen
        ):
            time.sleep(0.01)
        time.sleep(0.1)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 1, "the run ended before it could be killed: give it more readings"
    finished = subprocess.run(_command(crashed), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr

    got = results(crashed.parent / "fleet.duckdb")
    want = results(reference.parent / "fleet.duckdb")
    assert got.height == want.height > 0
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12)
    counted = counters(crashed.parent / "fleet.duckdb")
    assert counted["lines"] == counted["accepted"] == len(rows)
    stored = scan_readings(crashed.parent / "fleet.duckdb").select(pl.len()).collect().item()
    assert stored == len(rows), "every reading stored once across the kills"


def test_a_broker_restart_mid_stream_loses_nothing_and_duplicates_nothing(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic("restart", partitions=2)
    rows = readings(20_000, devices=20)
    first, second = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    produce(kafka.bootstrap, topic, first)
    spec_path = kafka_pipeline(
        tmp_path / "live", kafka.bootstrap, topic, until_end=False, interval="200ms"
    )
    runner = Runner(load_spec(spec_path))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as error:  # reported by the test below
            failure.append(error)

    def lines() -> int:
        return sum(c.get("lines") for c in list(runner.counters.values()))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while lines() < len(first) // 2 and time.monotonic() < deadline and not failure:
            time.sleep(0.02)
        kafka.restart()  # mid-stream: some of the first half read, the rest waits in the log
        produce(kafka.bootstrap, topic, second)
        deadline = time.monotonic() + 120
        while lines() < len(rows) and time.monotonic() < deadline and not failure:
            time.sleep(0.05)
    finally:
        runner.stop()
        thread.join(60)
    assert not failure, failure
    assert lines() == len(rows)
    db = spec_path.parent / "fleet.duckdb"
    counted = counters(db)
    assert counted["lines"] == counted["accepted"] == len(rows)
    assert scan_readings(db).select(pl.len()).collect().item() == len(rows)  # none lost, none twice
    # The closed windows are those of the same readings from a file.
    file_db = tmp_path / "file" / "fleet.duckdb"
    Runner(file_twin(spec_path, rows, tmp_path / "file")).run()
    got = results(db).filter(pl.col("window_start") < results(db)["window_start"].max())
    want = results(file_db).join(
        got.select("device_id", "window_start"), on=["device_id", "window_start"]
    )
    assert_frame_equal(
        got.drop("revision"), want.drop("revision").sort("device_id", "window_start"),
        check_exact=False, rel_tol=1e-12,
    )  # fmt: skip
