"""The file beside a store that says which running pipeline's API serves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sensorstream.store.served import Served, announce, marker, served_at, withdraw


def test_a_pipeline_announces_its_api_and_withdraws_it(tmp_path: Path) -> None:
    store = tmp_path / "out.duckdb"
    assert served_at(store) is None

    announce(store, "http://127.0.0.1:8123", "weather")

    assert marker(store) == tmp_path / "out.duckdb.served.json"
    assert served_at(store) == Served("http://127.0.0.1:8123", os.getpid(), "weather")
    withdraw(store)
    assert served_at(store) is None
    assert list(tmp_path.iterdir()) == []


def test_a_marker_left_by_a_dead_process_or_broken_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / "out.duckdb"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(gone.stdout)
    marker(store).write_text(json.dumps({"url": "http://x", "pid": dead, "pipeline": "p"}))
    assert served_at(store) is None
    marker(store).write_text("{not json")
    assert served_at(store) is None


def test_withdraw_leaves_another_processs_marker(tmp_path: Path) -> None:
    store = tmp_path / "out.duckdb"
    marker(store).write_text(json.dumps({"url": "http://x", "pid": 1, "pipeline": "p"}))
    withdraw(store)
    assert marker(store).exists()
