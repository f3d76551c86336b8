"""The heartwatch scenario: messages/s at full speed, and latency live at 16,000 messages/s.

What it measures, on the scenario's own pipeline (``sensorstream/scenarios/heartwatch``:
20,000 users joined with their historical ranges from the Parquet file beside the store,
the out-of-range derive, the range-and-unchanged alert, per-user and per-zip-code 10 s
windows; results and alerts stored in DuckDB, raw readings as Parquet segments,
checkpoints every 2 s), with users 42 and 7 collapsing (``--inject 42,7``) so the alert
fires and resolves along the way:

- **throughput**: the feed at full speed (``live: false``) for ``--seconds`` of event time
  (the document's measurement lasted about 3 minutes: 180 s, 2.88 million messages), in
  this process, from start to the last result stored: messages/s. Batches are the feed's
  own at full speed (50,000 messages) unless ``--interval`` cuts them otherwise;
- **latency**: the feed live at the document's rate (16,000 messages/s, the shipped 250 ms
  batches) for ``--live-seconds``: the runner's per-batch pipeline latency, the figure the
  overview and ``sensorstream_batch_latency_seconds`` show (a batch's arrival to its
  results and alerts in the sinks), and *since sent* (from the batch's oldest message's
  timestamp, so the wait in the batch too); p50 and p99 over batches.

The document's figure: "~16,000 messages" over "about 3 minutes", on six cloud machines
(3 r5a.large brokers, 3 r5.large KSQL servers; $0.717/hr), 100 partitions and 30 producer
processes. It says the 3 minutes mean "16,000 messages on average": read as a rate (the
reading it invites, 16,000 messages/s) and literally (16,000 messages in 180 s, 89/s); the
ratios print ours, on one process of this machine, against both, and per machine.
Reference run: TBD (the lead runs it on a quiet machine).

    python benchmarks/scenario_heartwatch.py [--seconds 180] [--live-seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from scenario_timing import live_latency  # type: ignore[import-not-found]

from sensorstream.pipeline.spec import PipelineSpec, YamlLoader
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario

RATE = 16_000.0  # messages a second: the document's figure read as a rate, and our feed's
DOCUMENT_MESSAGES, DOCUMENT_SECONDS, DOCUMENT_MACHINES = 16_000, 180, 6
COLLAPSED = "42,7"


def heartwatch_spec(
    scratch: Path, *, live: bool, seconds: float, interval: str | None
) -> PipelineSpec:
    """The shipped pipeline, users 42 and 7 collapsing, stored under ``scratch``."""
    shipped = scenario("heartwatch")
    source = dict(yaml.load(shipped.text(), Loader=YamlLoader)["source"])
    source |= {"live": live, "duration": f"{seconds}s"}
    source["feed"] = {**source["feed"], "collapse": COLLAPSED}
    if interval is None:
        source.pop("interval", None)  # the feed's own full-speed batches
    elif interval != "shipped":
        source["interval"] = interval
    historical = dict(yaml.load(shipped.text(), Loader=YamlLoader)["tables"]["historical"])
    historical["source"] = {**historical["source"], "path": str(scratch / "historical.parquet")}
    changes: dict[str, Any] = {
        "source": source,
        "tables": {"historical": historical},
        "sinks": [{"type": "duckdb", "path": str(scratch / "heartwatch.duckdb")}],
        "checkpoint": {"dir": str(scratch / "checkpoints"), "interval": "2s"},
        "api": {"serve": False},
    }
    return shipped.spec(changes=changes)


def throughput(seconds: float, interval: str | None) -> dict[str, float]:
    """Messages/s of the pipeline at full speed over ``seconds`` of the feed's event time."""
    with tempfile.TemporaryDirectory() as scratch:
        spec = heartwatch_spec(Path(scratch), live=False, seconds=seconds, interval=interval)
        runner = Runner(spec)
        started = time.perf_counter()
        runner.run()
        elapsed = time.perf_counter() - started
        counts = [runner.counters[p] for p in runner.counters]
        lines = sum(c.get("lines") for c in counts)
        alerts = sum(c.get("alert_transitions") for c in counts)
        results = sum(c.get("results") for c in counts)
    return {
        "messages": lines,
        "seconds": elapsed,
        "per_s": lines / elapsed,
        "results": results,
        "alerts": alerts,
    }


def latency(seconds: float) -> dict[str, float]:
    """p50/p99 over batches of the pipeline latency and of the latency since sent, live."""
    with tempfile.TemporaryDirectory() as scratch:
        spec = heartwatch_spec(Path(scratch), live=True, seconds=seconds, interval="shipped")
        result: dict[str, float] = live_latency(spec)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DOCUMENT_SECONDS)
    parser.add_argument("--live-seconds", type=float, default=60)
    parser.add_argument(
        "--interval", default=None, help="full-speed batches of this much event time"
    )
    args = parser.parse_args()
    speed = throughput(args.seconds, args.interval)
    per_s = speed["per_s"]
    print(
        f"full speed: {speed['messages']:,.0f} messages ({args.seconds:g} s of 20,000 users) in "
        f"{speed['seconds']:.2f} s = {per_s:,.0f} messages/s; {speed['results']:,.0f} window "
        f"results, {speed['alerts']:,.0f} alert transitions"
    )
    live = latency(args.live_seconds)
    print(
        f"live at {RATE:,.0f} messages/s, {live['batches']:,} batches: pipeline latency "
        f"p50 {live['p50_ms']:.1f} ms, p99 {live['p99_ms']:.1f} ms; since sent "
        f"p50 {live['sent_p50_ms']:.1f} ms, p99 {live['sent_p99_ms']:.1f} ms"
    )
    literal = DOCUMENT_MESSAGES / DOCUMENT_SECONDS
    print(
        f"document (Kafka + KSQL, {DOCUMENT_MACHINES} machines): ~{DOCUMENT_MESSAGES:,} "
        f"messages over ~{DOCUMENT_SECONDS} s; read as a rate {DOCUMENT_MESSAGES:,}/s "
        f"({DOCUMENT_MESSAGES / DOCUMENT_MACHINES:,.0f}/s a machine), literally {literal:.0f}/s"
    )
    print(
        f"ratio ours (one process) / document: {per_s / DOCUMENT_MESSAGES:.2f}x its rate "
        f"({per_s / (DOCUMENT_MESSAGES / DOCUMENT_MACHINES):.1f}x a machine's share), "
        f"{per_s / literal:,.0f}x the literal reading"
    )


if __name__ == "__main__":
    main()
