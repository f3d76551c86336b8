"""The access scenario's pipeline: readings/s at full speed, and p99 latency at the demo's rate.

Throughput: the shipped ``scenarios/access/pipeline.yaml`` (1,000 doors announced, events
joined as of their time, hopping district windows, the rule, per-door windows, the DuckDB
sink) at full speed, its events feed raised to ``--rate`` events a second over
``--seconds`` of event time, Wiedikon disrupted; readings/s counts both streams' lines
over the wall time of ``Runner.run``. The fastest of ``--repeat`` runs counts.

Latency: the same pipeline live at the demo's rate (100 events a second, the doors
re-announced every 5 minutes) for ``--live-seconds``; each batch's latency is from its
decoding (the feed's arrival) to its results reaching the sinks; p50/p99 over batches.

The document (seeds/iot-streaming-analytics.md: Kafka, Flink, Druid, Superset) reports no
throughput or latency figure to set beside these.

    python benchmarks/scenario_access.py [--rate 20000] [--seconds 120] [--repeat 2]
                                         [--live-seconds 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.sources import FeedSourceSettings

DOCUMENT = "none reported (the document gives no throughput or latency)"


def access_spec(folder: Path, *, live: bool, seconds: float, rate: float | None) -> PipelineSpec:
    """The shipped pipeline, bounded, its store in ``folder``, the events at ``rate``."""
    spec = scenario("access").spec(
        live=live,
        duration=timedelta(seconds=seconds),
        inject="Wiedikon",
        changes={
            "sinks": [{"type": "duckdb", "path": str(folder / "access.duckdb")}],
            "checkpoint": {"dir": str(folder / "checkpoints"), "interval": "2s"},
            "api": {"serve": False},
        },
    )
    if rate is None:
        return spec
    events = spec.streams["events"]
    assert isinstance(events.source, FeedSourceSettings)
    feed = events.source.feed.model_copy(update={"rate": rate})
    source = events.source.model_copy(update={"feed": feed})
    streams = {**spec.streams, "events": events.model_copy(update={"source": source})}
    return spec.model_copy(update={"streams": streams})


def throughput(rate: float, seconds: float, repeat: int) -> float:
    """Readings a second (both streams) of the fastest full-speed run."""
    best = 0.0
    for attempt in range(repeat):
        with tempfile.TemporaryDirectory() as scratch:
            spec = access_spec(Path(scratch), live=False, seconds=seconds, rate=rate)
            began = time.perf_counter()
            summary = Runner(spec, fresh=True).run()
            elapsed = time.perf_counter() - began
        lines = summary.counters.get("lines", 0)
        assert summary.balanced, "every line accounted for"
        speed = lines / elapsed
        print(f"  run {attempt + 1}: {lines:,} readings in {elapsed:.2f} s: {speed:,.0f}/s")
        best = max(best, speed)
    return best


def latency(seconds: float) -> dict[str, float]:
    """p50/p99 batch latency, live at the demo's rate."""
    observed: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        runner = Runner(access_spec(Path(scratch), live=True, seconds=seconds, rate=None))
        original = runner.metrics.observe_batch

        def observe(stream: str, rows: int, latency_s: float) -> None:
            observed.append(latency_s)
            original(stream, rows, latency_s)

        runner.metrics.observe_batch = observe  # type: ignore[method-assign]
        runner.run()
    ordered = sorted(observed)
    if not ordered:
        return {"batches": 0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "batches": len(ordered),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1e3,
    }


def main() -> None:
    """Print both figures beside the document's."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=20_000, help="events a second")
    parser.add_argument("--seconds", type=float, default=120, help="of event time")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--live-seconds", type=float, default=60)
    args = parser.parse_args()
    print(f"full speed: 1,000 doors, {args.rate:,.0f} events/s over {args.seconds:g} s")
    best = throughput(args.rate, args.seconds, args.repeat)
    figures = latency(args.live_seconds)
    print(f"readings/s at full speed (both streams): {best:,.0f}   document: {DOCUMENT}")
    print(
        f"latency live at 100 events/s ({figures['batches']:,.0f} batches): "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms   document: {DOCUMENT}"
    )


if __name__ == "__main__":
    main()
