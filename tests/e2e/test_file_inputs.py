"""Replaying awkward files end to end: bad CSV rows, a compressed input, a kill -9 midway."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from sensorstream.sources.simulator import write_dataset
from sensorstream.store import Store
from sensorstream.testing.checkpoints import current_unit

pytestmark = pytest.mark.e2e

PIPELINE = """
name: inputs
source: {{type: file, path: "{data}", chunk_bytes: {chunk_bytes}}}
readings: {{measurements: {{{measurements}}}}}
event_time: {{out_of_orderness: 5s}}
steps:
  - name: per_device
    window: {{type: tumbling, size: 10s}}
    aggregates: [count, mean(temperature), max(temperature)]
sinks:
  - {{type: duckdb, path: "{db}"}}
checkpoint: {{dir: "{checkpoints}", interval: 100ms}}
"""


def pipeline(
    folder: Path,
    data: Path,
    *,
    chunk_bytes: int = 16 * 1024 * 1024,
    measurements: str = "temperature: float",
) -> Path:
    folder.mkdir(exist_ok=True)
    spec = folder / "pipeline.yaml"
    spec.write_text(
        PIPELINE.format(
            data=data,
            chunk_bytes=chunk_bytes,
            measurements=measurements,
            db=folder / "out.duckdb",
            checkpoints=folder / "checkpoints",
        )
    )
    return spec


def command(spec: Path) -> list[str]:
    return [sys.executable, "-m", "sensorstream", "run", str(spec), "--no-progress"]


def run(spec: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        command(spec), capture_output=True, text=True, timeout=300, check=False, env=env
    )


def query(spec: Path, sql: str) -> pl.DataFrame:
    with Store(spec.parent / "out.duckdb") as store:  # raw readings are a view over segments
        return store.sql(sql)


def test_a_csv_row_with_an_extra_field_is_a_dead_letter_and_the_run_completes(
    tmp_path: Path,
) -> None:
    data = tmp_path / "x.csv"
    data.write_text(
        "device_id,ts,temperature\ndev-1,1700000000000,20.5\ndev-3,1700000003000,22.5,99\n"
    )
    spec = pipeline(tmp_path / "run", data)

    ran = run(spec)

    assert ran.returncode == 0, ran.stderr
    assert query(spec, "SELECT device_id FROM readings")["device_id"].to_list() == ["dev-1"]
    dead = query(spec, "SELECT reason_code, reason, origin, raw FROM dead_letters")
    assert dead.rows() == [
        (
            "wrong_field_count",
            "row 2 has 4 fields, the header has 3",
            "row 2 of x.csv",
            b"dev-3,1700000003000,22.5,99",
        )
    ]


def test_a_200k_row_csv_with_a_bad_row_at_150000_is_read_to_the_end(tmp_path: Path) -> None:
    rows = [f"dev-{i % 50},{1_700_000_000_000 + 10 * i},{i % 40}.5\n" for i in range(200_000)]
    rows[149_999] = "dev-1,1700001500000,20.5,99\n"
    data = tmp_path / "big.csv"
    data.write_text("device_id,ts,temperature\n" + "".join(rows))
    spec = pipeline(tmp_path / "run", data, chunk_bytes=256 * 1024)

    ran = run(spec)

    assert ran.returncode == 0, ran.stderr
    [accounted] = [line for line in ran.stdout.splitlines() if "accounted for" in line]
    assert "yes" in accounted
    assert query(spec, "SELECT count(*) AS n FROM readings")["n"].item() == 199_999
    dead = query(spec, "SELECT reason_code, origin FROM dead_letters")
    assert dead.rows() == [("wrong_field_count", "row 150000 of big.csv")]


def killed_midway_then_finished(spec: Path) -> tuple[bool, subprocess.CompletedProcess[str]]:
    """Run a pipeline, kill it with -9 soon after its first checkpoint, then run it again."""
    process = subprocess.Popen(command(spec), stdout=subprocess.DEVNULL)
    current = current_unit(spec.parent / "checkpoints")
    while process.poll() is None and not current.exists():
        time.sleep(0.01)
    time.sleep(0.2)
    killed = process.poll() is None
    if killed:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return killed, run(spec)


def results(spec: Path) -> pl.DataFrame:
    frame = query(spec, "SELECT * FROM results_inputs_per_device")
    volatile = [c for c in frame.columns if c in ("revision", "updated_at")]
    return frame.drop(volatile).sort(["device_id", "window_start"])


def test_a_gzip_file_named_ndjson_replays_exactly_as_the_plain_file_after_kill_9(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "readings.ndjson"
    write_dataset(plain, devices=200, readings=120_000, malformed_fraction=0.001, seed=4)
    packed = tmp_path / "packed" / "readings.ndjson"  # gzip, told only by its content
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    measurements = "temperature: float, humidity: float"
    clean = pipeline(tmp_path / "clean", plain, chunk_bytes=64 * 1024, measurements=measurements)
    assert run(clean).returncode == 0

    crashed = pipeline(
        tmp_path / "crashed", packed, chunk_bytes=64 * 1024, measurements=measurements
    )
    killed, finished = killed_midway_then_finished(crashed)

    assert finished.returncode == 0, finished.stderr
    assert killed, "the replay finished before it could be killed; make it longer"
    assert "resumed from checkpoint" in finished.stdout
    assert results(crashed).equals(results(clean))
    count = "SELECT count(*) AS n FROM readings"
    assert query(crashed, count)["n"].item() == query(clean, count)["n"].item()


def test_a_stray_quote_in_row_2_costs_one_row_and_a_kill_9_changes_nothing(
    tmp_path: Path,
) -> None:
    rows = [f"dev-{i % 50},{1_700_000_002_000 + 10 * i},{i % 40}.5\n" for i in range(300_000)]
    data = tmp_path / "stray.csv"
    data.write_text(
        "device_id,ts,temperature\n"
        "dev-1,1700000000000,20.5\n"
        '12" sensor,1700000001000,21\n' + "".join(rows)
    )
    clean = pipeline(tmp_path / "clean", data, chunk_bytes=64 * 1024)
    ran = run(clean)
    assert ran.returncode == 0, ran.stderr
    [accounted] = [line for line in ran.stdout.splitlines() if "accounted for" in line]
    assert "yes" in accounted
    assert query(clean, "SELECT count(*) AS n FROM readings")["n"].item() == 300_001
    dead = query(clean, "SELECT reason_code, origin, raw FROM dead_letters")
    assert dead.rows() == [("invalid_csv", "row 2 of stray.csv", b'12" sensor,1700000001000,21')]

    crashed = pipeline(tmp_path / "crashed", data, chunk_bytes=64 * 1024)
    killed, finished = killed_midway_then_finished(crashed)

    assert finished.returncode == 0, finished.stderr
    assert killed, "the replay finished before it could be killed; make it longer"
    assert "resumed from checkpoint" in finished.stdout
    assert results(crashed).equals(results(clean))
    dead_after = query(crashed, "SELECT reason_code, origin, raw FROM dead_letters")
    assert dead_after.rows() == dead.rows()
