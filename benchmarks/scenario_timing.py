"""What the scenario benchmarks share: a live run's latency per batch, and percentiles.

``live_latency`` runs a scenario's spec live in this process and records, for every batch
that carried readings, the runner's own *pipeline latency* (from the batch's arrival to
its results reaching the sinks: what ``sensorstream_batch_latency_seconds`` on
``/metrics`` shows) and the latency *since sent* (from the batch's oldest reading's event
time, which a feed stamps with its send time, to the moment the runner took the batch).
"""

from __future__ import annotations

import statistics

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.sources.base import SourceBatch


def live_latency(spec: PipelineSpec) -> dict[str, float]:
    """p50/p99 over batches of the pipeline latency and of the latency since sent."""
    pipeline: list[float] = []
    since_sent: list[float] = []
    runner = Runner(spec)
    original = runner.metrics.observe_batch

    def observe(stream: str, rows: int, latency_s: float) -> None:
        if rows:
            pipeline.append(latency_s)
        original(stream, rows, latency_s)

    def sent(item: SourceBatch, total: object) -> None:
        if item.readings.height:
            oldest_us = item.readings["ts"].dt.epoch("us").min()
            assert isinstance(oldest_us, int)
            since_sent.append((runner.now_us() - oldest_us) / 1e6)

    runner.metrics.observe_batch = observe  # type: ignore[method-assign]
    runner.on_batch = sent
    runner.run()
    return {
        "batches": len(pipeline),
        "p50_ms": statistics.median(pipeline) * 1e3,
        "p99_ms": percentile(pipeline, 0.99) * 1e3,
        "sent_p50_ms": statistics.median(since_sent) * 1e3,
        "sent_p99_ms": percentile(since_sent, 0.99) * 1e3,
    }


def percentile(values: list[float], share: float) -> float:
    """The value ``share`` of the way up the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]
