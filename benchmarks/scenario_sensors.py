"""The sensors scenario (iot-kafka-spark): readings/s at full speed, p99 latency live.

Three figures, each from the shipped pipeline (``sensorstream/scenarios/sensors``), its
feeds sending the document's data (three sensors at 1 Hz, some twice, some late):

- **readings/s at full speed**: ``--hours`` of event time replayed as fast as possible
  (``live: false``), lines read over the run's wall time (its own ``RunSummary``);
- **latency live**: ``--live-seconds`` paced by the clock in 200 ms batches, as ``demo``
  runs it; each batch's time from its arrival to its results in the sinks (what
  ``sensorstream_batch_latency_seconds`` observes), p50 / p99 / max;
- **the document's request**: its ``POST /compute/metrics`` (two sensors, two metrics
  each, one minute) through the app in process, ``--requests`` times over the full-speed
  store, p50 / p99. The document reports no throughput or latency for its Spark job; its
  only figure is that such requests "are taking a few seconds when asking to compute
  several metrics for several sensors".

    python benchmarks/scenario_sensors.py [--hours 168] [--live-seconds 60] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.sources import FeedSourceSettings

START = datetime(2020, 1, 13, 15, 0, tzinfo=UTC)
DOCUMENT_REQUEST = b"""{
\t"temperature" : ["count", "min"],
\t"humidity" : ["average", "max"],
\t"from": "2020-01-13 15:12:00",
\t"to": "2020-01-13 15:13:00",
}"""


def spec(folder: Path, *, live: bool, duration: timedelta) -> PipelineSpec:
    """The shipped pipeline, bounded, stored in ``folder``; at full speed from 2020-01-13."""
    shipped = scenario("sensors").spec(
        live=live,
        duration=duration,
        changes={
            "sinks": [{"type": "duckdb", "path": str(folder / "sensors.duckdb")}],
            "checkpoint": {"dir": str(folder / "checkpoints"), "interval": "2s"},
        },
    )
    if live:
        return shipped
    streams = {}
    for name, stream in shipped.streams.items():
        assert isinstance(stream.source, FeedSourceSettings)
        source = stream.source.model_copy(update={"start": START})
        streams[name] = stream.model_copy(update={"source": source})
    return shipped.model_copy(update={"streams": streams})


def recording(runner: Runner) -> list[float]:
    """Every batch latency the runner observes, in seconds (beside its histogram)."""
    latencies: list[float] = []
    observe: Callable[[str, int, float], None] = runner.metrics.observe_batch

    def observed(stream: str, rows: int, latency_s: float) -> None:
        if rows:
            latencies.append(latency_s)
        observe(stream, rows, latency_s)

    runner.metrics.observe_batch = observed  # type: ignore[method-assign]
    return latencies


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="scenario-sensors-") as name:
        yield Path(name)


def full_speed(hours: float, requests: int) -> None:
    from fastapi.testclient import TestClient

    from sensorstream.api.app import Serving, create_app
    from sensorstream.store import Store

    with folder() as where:
        runner = Runner(spec(where, live=False, duration=timedelta(hours=hours)))
        summary = runner.run()
        lines = summary.counters["lines"]
        print(
            f"full speed: {lines:,} lines ({hours:g} h of event time) in {summary.seconds:.2f} s: "
            f"{lines / summary.seconds:,.0f} readings/s "
            f"(duplicates {summary.counters.get('duplicates', 0):,}, "
            f"late {summary.counters.get('late', 0):,})"
        )

        @contextmanager
        def open_store() -> Iterator[Store]:
            with Store(where / "sensors.duckdb") as store:
                yield store

        timings: list[float] = []
        with TestClient(create_app(Serving("sensors", open_store))) as api:
            for _ in range(requests):
                began = time.perf_counter()
                answer = api.post("/compute/metrics", content=DOCUMENT_REQUEST)
                timings.append(time.perf_counter() - began)
                assert answer.status_code == 200, answer.text
        print(
            f"the document's /compute/metrics request x{requests}: "
            f"p50 {statistics.median(timings) * 1e3:.1f} ms, "
            f"p99 {percentile(timings, 0.99) * 1e3:.1f} ms "
            "(document: 'a few seconds' for several metrics of several sensors)"
        )


def live(seconds: float) -> None:
    with folder() as where:
        runner = Runner(spec(where, live=True, duration=timedelta(seconds=seconds)))
        latencies = recording(runner)
        summary = runner.run()
        if not latencies:
            print(f"live: no batch with readings in {seconds:g} s")
            return
        print(
            f"live: {summary.counters['lines']:,} lines in {len(latencies):,} batches over "
            f"{seconds:g} s; latency p50 {statistics.median(latencies) * 1e3:.2f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, max {max(latencies) * 1e3:.2f} ms "
            "(document: none reported)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=168.0, help="event time at full speed")
    parser.add_argument("--live-seconds", type=float, default=60.0, help="live run length")
    parser.add_argument("--requests", type=int, default=200, help="/compute/metrics requests")
    options = parser.parse_args()
    full_speed(options.hours, options.requests)
    live(options.live_seconds)


if __name__ == "__main__":
    main()
