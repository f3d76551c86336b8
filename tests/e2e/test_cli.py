"""The CLI end to end: simulate a dataset, replay it, query it, and run the live demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def sensorstream(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorstream", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_simulate_replay_and_query_a_dataset(tmp_path: Path) -> None:
    made = sensorstream(
        "simulate", "r.ndjson", "--devices", "20", "--readings", "5000", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    replayed = sensorstream("replay", "r.ndjson", "--window", "30s", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert "lines in" in replayed.stdout
    assert "5,000" in replayed.stdout
    [accounted] = [line for line in replayed.stdout.splitlines() if "accounted for" in line]
    assert "yes" in accounted
    queried = sensorstream("query", "--pipeline", "replay", "--limit", "3", cwd=tmp_path)
    assert queried.returncode == 0, queried.stderr
    assert "dev-000" in queried.stdout
    counted = sensorstream("query", "SELECT count(*) AS n FROM readings", cwd=tmp_path)
    assert "5000" in counted.stdout


def test_a_bad_pipeline_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: x\nsource: {type: file, path: r.ndjson}\n")
    ran = sensorstream("run", "p.yaml", cwd=tmp_path)
    assert ran.returncode == 2
    assert "p.yaml" in ran.stderr
    assert "readings" in ran.stderr


def test_the_demo_shows_live_window_results_within_seconds(tmp_path: Path) -> None:
    demo = sensorstream(
        "demo", "--devices", "5", "--window", "2s", "--duration", "8s", cwd=tmp_path
    )
    assert demo.returncode == 0, demo.stderr
    assert "per_device" in demo.stdout
    assert "dev-00004" in demo.stdout
    assert "all readings accounted for" in demo.stdout
    assert (tmp_path / ".sensorstream" / "demo.duckdb").exists()
