"""kill -9 in the middle of a replay, start again: the stored results equal an uninterrupted run.

The pipeline runs two rules and a webhook sink POSTing every alert transition to a real
HTTP server on the loopback (in this process, in a thread): after the kills, each transition
the store holds reached the webhook, none under an id the store does not hold, and the
receiver got the same bodies an uninterrupted run sent. Repeats (a POST answered just before
a kill, whose delivery was not yet recorded) come again under the same Idempotency-Key, which
the receiver dedupes, as a real receiver would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from sensorstream.sinks.webhook_outbox import read_deliveries
from sensorstream.sources.simulator import write_dataset
from sensorstream.store import scan_readings
from sensorstream.testing.checkpoints import current_unit
from sensorstream.testing.webhooks import WebhookReceiver

pytestmark = pytest.mark.e2e
KILLS = 3

PIPELINE = """
name: crashy
source: {{type: file, path: "{data}", chunk_bytes: 65536}}
readings: {{measurements: {{temperature: float, humidity: float}}}}
event_time: {{out_of_orderness: 5s, allowed_lateness: 10s}}
steps:
  - name: per_device
    window: {{type: tumbling, size: 10s}}
    aggregates: [count, mean(temperature), max(temperature), p90(humidity), last(humidity)]
  - name: sessions
    window: {{type: session, gap: 4s}}
    aggregates: [count, min(temperature)]
  - name: warm_windows
    input: per_device
    rule:
      threshold: temperature_mean
      above: {{notice: 20, warning: 23, critical: 26}}
      clear: 0.5
    consecutive: 2
  - name: hot_readings
    rule: {{threshold: temperature, above: {{warning: 27}}}}
    for: 5s
sinks:
  # Segments of raw readings between checkpoints too: a kill leaves some after the last one.
  - {{type: duckdb, path: "{db}", flush_rows: 20000}}
  - type: webhook
    url: "{hook}"
    states: [pending, firing, resolved, flapping, correction]
    backoff: 50ms
    max_backoff: 200ms
    drain: 60s
checkpoint: {{dir: "{checkpoints}", interval: 250ms}}
"""


def _pipeline(tmp_path: Path, name: str, data: Path, hook: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    spec = folder / "pipeline.yaml"
    spec.write_text(
        PIPELINE.format(
            data=data, db=folder / "out.duckdb", checkpoints=folder / "checkpoints", hook=hook
        )
    )
    return spec


def _command(spec: Path) -> list[str]:
    return [sys.executable, "-m", "sensorstream", "run", str(spec), "--no-progress"]


def _current_checkpoint(folder: Path) -> str | None:
    pointer = current_unit(folder / "checkpoints")
    return pointer.read_text() if pointer.exists() else None


def _tables(db: Path) -> dict[str, pl.DataFrame]:
    """Every table of the DuckDB file, and the raw readings in the segments beside it."""
    with duckdb.connect(str(db), read_only=True) as con:
        names = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM information_schema.tables ORDER BY table_name"
            ).fetchall()
        ]
        frames = {name: con.sql(f'SELECT * FROM "{name}"').pl() for name in names}
    assert "readings" not in frames, "raw readings belong in segments"
    frames["readings"] = scan_readings(db).collect()
    tables = {}
    for name, frame in frames.items():
        # Revisions, write times, arrival times and batch positions depend on when and
        # how the input was cut into batches; the content must not.
        volatile = [
            c
            for c in frame.columns
            if c in ("revision", "updated_at", "arrived_at", "position", "emitted_at")
        ]
        frame = frame.drop(volatile)
        tables[name] = frame.sort(frame.columns, nulls_last=True)
    return tables


def _webhooks(receiver: WebhookReceiver) -> dict[str, object]:
    """The bodies received by Idempotency-Key; a key sent again must bring the same body."""
    bodies: dict[str, object] = {}
    for hit in receiver.received:
        assert bodies.setdefault(hit.key, hit.body) == hit.body, f"{hit.key} sent two ways"
    return bodies


def test_kill_9_mid_replay_then_restart_gives_identical_results(tmp_path: Path) -> None:
    data = tmp_path / "readings.ndjson"
    write_dataset(
        data,
        devices=300,
        readings=150_000,
        max_disorder=timedelta(seconds=5),
        seed=3,
        late_fraction=0.01,
        duplicate_fraction=0.01,
        malformed_fraction=0.002,
    )
    # A slow receiver: a kill often lands while a POST waits for its answer.
    slow = WebhookReceiver(delay_s=0.01)
    with WebhookReceiver() as clean_hook, slow as crashed_hook:
        clean = _pipeline(tmp_path, "clean", data, clean_hook.url)
        subprocess.run(_command(clean), check=True, capture_output=True, timeout=300)
        crashed = _pipeline(tmp_path, "crashed", data, crashed_hook.url)
        kills = _crash_and_finish(crashed)
    assert kills == KILLS, "the replay finished before it could be killed; make it longer"

    expected, actual = _tables(clean.parent / "out.duckdb"), _tables(crashed.parent / "out.duckdb")
    assert expected.keys() == actual.keys()
    for name, frame in expected.items():
        assert frame.height > 0 or name.startswith("late"), name
        assert actual[name].equals(frame), f"table {name} differs after kill -9 and restart"
    accepted = int(expected["counters"].filter(pl.col("counter") == "accepted")["value"].sum())
    assert expected["readings"].height == accepted, "every accepted reading is stored once"
    segments = crashed.parent / "out.duckdb.segments"
    assert not list(segments.rglob(".*.tmp")), "a half-written segment was left behind"
    current = _current_checkpoint(crashed.parent)
    assert current is not None
    unit = current_unit(crashed.parent / "checkpoints").parent
    counters = json.loads((unit / current / "manifest.json").read_text())["counters"]
    outcomes = ("accepted", "duplicates", "late", "dead_letters", "blank")
    assert counters["lines"] == sum(counters.get(name, 0) for name in outcomes)
    assert counters["lines"] == data.read_bytes().count(b"\n")

    stored = set(actual["alert_transitions"]["transition_id"])
    assert len(stored) > 100, "too few transitions to tell anything"
    received = _webhooks(crashed_hook)
    assert set(received) == stored, "webhooks and stored transitions differ"
    assert received == _webhooks(clean_hook), "the webhooks differ from an uninterrupted run's"
    [outbox] = crashed.parent.glob("checkpoints.webhook-*.sqlite")
    statuses = {row.transition_id: row.status for row in read_deliveries(outbox)}
    assert statuses == dict.fromkeys(stored, "delivered")


def _crash_and_finish(crashed: Path) -> int:
    """Kill the pipeline -9 KILLS times at random moments, then let it finish; the kills."""
    rng = random.Random(11)
    kills = 0
    while kills < KILLS:
        process = subprocess.Popen(_command(crashed), stdout=subprocess.DEVNULL)
        seen = _current_checkpoint(crashed.parent)
        while process.poll() is None and _current_checkpoint(crashed.parent) == seen:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is not None:
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    finished = subprocess.run(_command(crashed), capture_output=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr.decode()
    return kills
