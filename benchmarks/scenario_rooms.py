"""The rooms scenario (heatmap-alert): throughput at full speed, and latency live at 5/s.

What it measures, on the scenario's own pipeline (``sensorstream/scenarios/rooms``: the
IN/OUT split, two 5 s window steps, the relation, the two-warnings rule; results and
alerts stored in DuckDB, raw readings as Parquet segments, checkpoints every 2 s), with
room3 overheating (``--inject room3``) so the rule fires and resolves along the way:

- **throughput**: the feed at full speed (``live: false``) for ``--readings`` readings
  (their event time at 5/s), in this process, from start to the last result stored:
  readings/s;
- **latency**: the feed live at the document's rate (5 readings/s, 50 ms batches) for
  ``--seconds``. *Pipeline latency* is the runner's own per-batch figure, the one the
  pipeline panel and ``sensorstream_batch_latency_seconds`` on ``/metrics`` show: from a
  batch's arrival to its results and alerts reaching the sinks. *Since sent* adds the wait
  in the batch: from the batch's oldest reading's send time (its ``timestamp``) to the
  sinks. p50 and p99 are over batches.

The document reports an average pipeline latency of 300-350 ms on Flink (Kafka -> Flink ->
InfluxDB, 5 rooms at 5 readings/s); the ratios print ours against 300 ms and 350 ms.
Reference run: TBD (the lead runs it on a quiet machine).

    python benchmarks/scenario_rooms.py [--readings 1000000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from scenario_timing import live_latency  # type: ignore[import-not-found]

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario

RATE = 5.0  # readings a second, the document's load
FLINK_MS = (300.0, 350.0)  # the document's average pipeline latency


def rooms_spec(scratch: Path, *, live: bool, duration: timedelta) -> PipelineSpec:
    """The scenario's pipeline, room3 overheating, stored under ``scratch``."""
    changes: dict[str, Any] = {
        "sinks": [{"type": "duckdb", "path": str(scratch / "rooms.duckdb")}],
        "checkpoint": {"dir": str(scratch / "checkpoints"), "interval": "2s"},
        "api": {"serve": False},
    }
    return scenario("rooms").spec(live=live, duration=duration, inject="room3", changes=changes)


def throughput(readings: int) -> dict[str, float]:
    """Readings/s of the pipeline at full speed over ``readings`` readings."""
    with tempfile.TemporaryDirectory() as scratch:
        duration = timedelta(seconds=readings / RATE)
        runner = Runner(rooms_spec(Path(scratch), live=False, duration=duration))
        started = time.perf_counter()
        runner.run()
        elapsed = time.perf_counter() - started
        lines = sum(counts.get("lines") for counts in runner.counters.values())
    return {"readings": lines, "seconds": elapsed, "per_s": lines / elapsed}


def latency(seconds: float) -> dict[str, float]:
    """p50/p99 over batches of the pipeline latency and of the latency since sent, live."""
    with tempfile.TemporaryDirectory() as scratch:
        spec = rooms_spec(Path(scratch), live=True, duration=timedelta(seconds=seconds))
        result: dict[str, float] = live_latency(spec)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    speed = throughput(args.readings)
    print(
        f"full speed: {speed['readings']:,.0f} readings in {speed['seconds']:.2f} s = "
        f"{speed['per_s']:,.0f} readings/s ({speed['per_s'] / RATE:,.0f}x the document's 5/s)"
    )
    live = latency(args.seconds)
    print(
        f"live at {RATE:g} readings/s, {live['batches']:,} batches: pipeline latency "
        f"p50 {live['p50_ms']:.1f} ms, p99 {live['p99_ms']:.1f} ms; since sent "
        f"p50 {live['sent_p50_ms']:.1f} ms, p99 {live['sent_p99_ms']:.1f} ms"
    )
    low, high = FLINK_MS
    print(f"document (Flink): average pipeline latency {low:.0f}-{high:.0f} ms")
    print(
        f"ratio ours / Flink: pipeline p99 {live['p99_ms'] / high:.3f}-"
        f"{live['p99_ms'] / low:.3f}, since sent p99 {live['sent_p99_ms'] / high:.3f}-"
        f"{live['sent_p99_ms'] / low:.3f}"
    )


if __name__ == "__main__":
    main()
